// Entry point bundled by esbuild at `make setup` into static/app/vendor/charts.js: the charts of the owner and
// model pages (npm uPlot; its stylesheet is copied to vendor/uplot.css).
export { default as uPlot } from 'uplot';
