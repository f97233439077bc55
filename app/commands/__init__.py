"""One module per group of CLI commands; each exposes ``register(app)``.

``app.cli`` imports the modules listed in ``COMMAND_MODULES`` and lets each add
its commands, so command groups can grow independently.
"""

COMMAND_MODULES = [
    "app.commands.io_cmds",  # info, convert
    "app.commands.sim_cmds",  # simulate
    "app.commands.run_cmds",  # classify, record
    "app.commands.train_cmds",  # train, eval
    "app.commands.gui_cmds",  # demo, replay, gui
    "app.commands.label_cmds",  # label ...
]
