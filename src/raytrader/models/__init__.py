"""Trained models: supervised classifiers (:mod:`raytrader.models.supervised`) whose predictions
become target positions the simulation kernel backtests like any strategy."""
