"""The recommendation as a value: defined once, in analyzer/recommend/model.py.

This module only names it for the memory, the lifecycle and verification.
"""

from analyzer.recommend.model import KINDS, VALIDATED_BY, Recommendation

__all__ = ["KINDS", "VALIDATED_BY", "Recommendation"]
