"""The salt appended to a hashed input (``systems.ezkl.profile``): 16 x 8 bits = 128 bits of entropy. Small elements
keep the salt inside the range checks of small decomposition bases (16-bit elements at scale 7 need 2^23 and ruled
out every base below 2^24 for hashed inputs). Here, in core, so that the command line names it without loading the
proof systems."""

SALT_ELEMENTS = 16
SALT_BITS = 8
