"""dvsapp core library: events, readers, binning, model, pipeline.  No Qt, no printing, no argv."""

__version__ = "0.1.0"
