"""The meta-learning ensemble: causal regime detection (:mod:`raytrader.meta.regimes`) and, built on
it, the parts that weigh an ensemble's members by their predicted performance."""
