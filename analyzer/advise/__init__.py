"""`pgarchitect advise`: the index each given statement needs (docs/analyzer.md, advise)."""

from __future__ import annotations

from analyzer.advise.run import Advice, AdviceResult, advise, cmd_advise

__all__ = ["Advice", "AdviceResult", "advise", "cmd_advise"]
