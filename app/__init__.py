"""What a person touches: the command line (``dvsapp.app.cli``) and the Qt GUI (``dvsapp.app.gui``)."""
