"""LLM providers: one module per provider, the response shape they share, and the classifier
that turns a provider's answer into one of `riskflow.contracts.failures`."""
