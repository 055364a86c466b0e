"""Composable Rx operators of the pipeline; each factory returns ``Callable[[Observable], Observable]``."""
