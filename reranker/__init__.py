"""Stage 2, one family behind one interface (`stage.SecondStage`): the cross-encoder (`cross_encoder/`) and the
LightGBM ranker (`lightgbm/`), the calibration and decision rule both use, and their out-of-fold F2 metrics."""
