"""What a person touches: the command line (``app.cli``) and the Qt GUI (``app.gui``)."""
