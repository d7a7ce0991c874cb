"""The ``credits`` rail: API keys drawing on prepaid credits, for callers who do not sign per call."""
