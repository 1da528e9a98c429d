"""matplotlib, imported only when a figure is drawn, so that training, sweeps that never plot and the
report's tables do not pay for the import."""


def pyplot():
  """matplotlib's pyplot, drawing to files (no display needed)."""
  import matplotlib  # noqa: PLC0415 (optional: only the figures need matplotlib)

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415 (after choosing the file backend)

  return plt
