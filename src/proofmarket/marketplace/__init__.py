"""The marketplace around the calls: the catalogue (listings' terms, cards, search), owners' submissions and their
quotas, analytics from the calls' table, and webhooks (callers' callbacks, owners' subscriptions). The node composes
them (``node/compose.py``); the API serves them."""
