"""The analyses behind the book's chapters, with their charts, tables and build tools.

Each chapter calls one module here: :mod:`~recsys.report.data_charts` for the input data,
:mod:`~recsys.report.split_charts` for the splits, :mod:`~recsys.report.prediction_charts` for
the predictions (on the scores of :mod:`~recsys.report.evaluation`) and
:mod:`~recsys.report.training_charts` for training. :mod:`~recsys.report.context` opens the
checkpoint a chapter describes, :mod:`~recsys.report.charts` draws charts without a network,
:mod:`~recsys.report.prepare` is the pre-render step and :mod:`~recsys.report.execute` runs a
chapter the way Quarto does, for tests.
"""
