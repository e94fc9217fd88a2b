"""The discrete action set shared by every Doom task, modelled on DeepMind Lab's usual nine actions."""

from __future__ import annotations

BUTTONS = ("MOVE_FORWARD", "MOVE_BACKWARD", "MOVE_LEFT", "MOVE_RIGHT", "TURN_LEFT", "TURN_RIGHT", "ATTACK")

# Action name -> the buttons it holds down.
ACTIONS = (
    ("forward", ("MOVE_FORWARD",)),
    ("backward", ("MOVE_BACKWARD",)),
    ("strafe_left", ("MOVE_LEFT",)),
    ("strafe_right", ("MOVE_RIGHT",)),
    ("turn_left", ("TURN_LEFT",)),
    ("turn_right", ("TURN_RIGHT",)),
    ("forward_turn_left", ("MOVE_FORWARD", "TURN_LEFT")),
    ("forward_turn_right", ("MOVE_FORWARD", "TURN_RIGHT")),
    ("fire", ("ATTACK",)),
)
ACTION_NAMES = tuple(name for name, _ in ACTIONS)
NUM_ACTIONS = len(ACTIONS)
# Button vectors (one byte per button) in action order.
BUTTON_VECTORS = tuple(bytes(int(b in held) for b in BUTTONS) for _, held in ACTIONS)
ACTION_REPEAT = 4
