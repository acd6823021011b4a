"""Model prices: what a call costs, for site budgets (`riskflow.config.budget`) and replay reports.

`config/riskflow.yaml`:

```yaml
prices:
  currency: CNY
  models:                        # per million tokens; a model not listed costs 0
    qwen-plus: {input_per_million: 0.8, output_per_million: 2.0}
```

Take the figures from the provider's price list (DashScope: the Model Studio pricing page, per
million input and output tokens); riskflow ships examples only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """A model's price per million tokens, in `PriceTable.currency`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class PriceTable(BaseModel):
    """`prices:`: the currency, and each model's price (a model not listed costs 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(default="CNY", pattern=r"^[A-Za-z]{3}$")
    models: dict[str, Price] = Field(default_factory=dict)

    def cost(self, model: str, usage: TokenUsage) -> float:
        """What `usage` of `model` costs, in `currency` (0 for a model without a price)."""
        price = self.models.get(model)
        if price is None:
            return 0.0
        return (
            usage.input_tokens * price.input_per_million
            + usage.output_tokens * price.output_per_million
        ) / 1_000_000

    def priced(self, model: str) -> bool:
        return model in self.models


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
