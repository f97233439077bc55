"""One module per group of CLI commands; each exposes ``register(app)``.

``dvsapp.app.cli`` imports the modules listed in ``COMMAND_MODULES`` and lets each add
its commands, so command groups can grow independently.
"""

COMMAND_MODULES = [
    "dvsapp.app.commands.io_cmds",  # info, convert
    "dvsapp.app.commands.sim_cmds",  # simulate
    "dvsapp.app.commands.run_cmds",  # classify, record
    "dvsapp.app.commands.train_cmds",  # train, eval
    "dvsapp.app.commands.gui_cmds",  # demo, replay, gui
    "dvsapp.app.commands.label_cmds",  # label ...
]
