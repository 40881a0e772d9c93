"""Price a European call by Monte Carlo on geometric Brownian motion.

Each sequence simulates one price path of ``steps`` exact log-normal increments and
returns the discounted payoff. The mean payoff converges to the Black-Scholes price
(``black_scholes`` below), which the custom summary reports next to the estimate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def black_scholes_call(s0: float, k: float, r: float, sigma: float, t: float) -> float:
    """The exact price of a European call."""
    d1 = (math.log(s0 / k) + (r + sigma**2 / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    return s0 * cdf(d1) - k * math.exp(-r * t) * cdf(d2)


def setup(params: dict[str, Any]) -> dict[str, float]:
    """Once per executor: the per-step drift and volatility."""
    dt = float(params["maturity"]) / int(params["steps"])
    sigma = float(params["sigma"])
    return {
        "drift": (float(params["rate"]) - sigma**2 / 2) * dt,
        "vol": sigma * math.sqrt(dt),
        "discount": math.exp(-float(params["rate"]) * float(params["maturity"])),
    }


def simulate(
    params: dict[str, Any], rng: np.random.Generator, state: dict[str, float]
) -> dict[str, float | bool]:
    """One path: the terminal price and the discounted payoff."""
    z = rng.standard_normal(int(params["steps"]))
    s_t = float(params["spot"]) * math.exp(state["drift"] * len(z) + state["vol"] * z.sum())
    payoff = max(s_t - float(params["strike"]), 0.0)
    return {"payoff": state["discount"] * payoff, "s_t": s_t, "in_the_money": payoff > 0}


def summarize(df: Any, params: dict[str, Any]) -> dict[str, float]:
    """Custom summary (runs in Spark): the price, its 95% interval, and the exact price."""
    from pyspark.sql import functions as F

    row = df.agg(
        F.mean("payoff").alias("m"), F.stddev("payoff").alias("s"), F.count("*").alias("n")
    ).first()
    half = 1.96 * row["s"] / math.sqrt(row["n"])
    exact = black_scholes_call(
        float(params["spot"]),
        float(params["strike"]),
        float(params["rate"]),
        float(params["sigma"]),
        float(params["maturity"]),
    )
    return {
        "price": row["m"],
        "ci95_low": row["m"] - half,
        "ci95_high": row["m"] + half,
        "black_scholes": exact,
    }
