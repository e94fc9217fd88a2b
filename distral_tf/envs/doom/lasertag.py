"""Laser tag (the paper's DeepMind Lab ``lt_*`` levels): deathmatch against ViZDoom's built-in bots.

Reward: +1 per frag, -1 per own death (a suicide, which also costs a frag, counts
-1 in total). The player respawns at once. Arenas are open rooms with pillars,
labmaze mazes with loops, or many-room maps; each can be fixed or regenerated every
episode, and bots can be a fixed team or drawn anew (count and identity) every episode.
"""

from __future__ import annotations

import numpy as np

from distral_tf.envs.doom import scenes
from distral_tf.envs.doom.env import DoomEnv, Scene
from distral_tf.envs.doom.mapgen import Layout, cell_center

ARENAS = ("open", "maze", "rooms")
# Bot names defined in ViZDoom's bots.cfg.
BOT_NAMES = ("Rambo", "McClane", "MacGyver", "Plissken", "Machete", "Anderson", "Leone", "Predator",
             "Ripley", "T800", "Dredd", "Conan", "Bond", "Jones", "Blazkowicz")
SHOTGUN, CHAINGUN, CLIP, SHELLS, STIMPACK = 2001, 2002, 2007, 2008, 2011
_FIXED_ARENA_SEED = 4242


def arena_layout(rng: np.random.Generator, arena: str, size: int, pillars: float = 0.5) -> Layout:
    if arena == "open":
        walls = np.zeros((size, size), bool)
        walls[0, :] = walls[-1, :] = walls[:, 0] = walls[:, -1] = True
        for r in range(2, size - 2, 2):
            for c in range(2, size - 2, 2):
                walls[r, c] = rng.random() < pillars
        return Layout(walls=walls, rooms=np.full(walls.shape, "."))
    rooms, loops = (3, 0.4) if arena == "maze" else (8, 0.2)
    return scenes.random_layout(rng, size, max_rooms=rooms, extra_connection_probability=loops)


class DoomLasertagEnv(DoomEnv):
    """Deathmatch against ``bots`` built-in bots (a ``(low, high)`` pair draws the count per episode)."""

    respawn_on_death = True
    restart_on_seed = True
    warmup_tics = 40  # lets the spawn's teleport fog (about 36 tics) fade from view
    game_args = ("-host 1", "-deathmatch", "+sv_forcerespawn 1", "+sv_noautoaim 1", "+sv_respawnprotect 1",
                 "+sv_spawnfarthest 1", "+sv_nocrouch 1", "+viz_respawn_delay 0", "+timelimit 0",
                 "+sv_cheats 1")

    def __init__(self, arena: str = "open", size: int = 13, procedural_map: bool = False,
                 bots: int | tuple[int, int] = 3, procedural_bots: bool = False, light: int = 192,
                 weapons: bool = True, pillars: float = 0.5, arena_seed: int = 0, episode_length: int = 900, **kwargs):
        if arena not in ARENAS:
            raise ValueError(f"arena must be one of {ARENAS}, got {arena!r}.")
        super().__init__(episode_length=episode_length, **kwargs)
        self.arena, self.size, self.light, self.weapons = arena, size, light, weapons
        self.procedural = procedural_map
        self.bots = (bots, bots) if isinstance(bots, int) else tuple(bots)
        self.procedural_bots = procedural_bots
        self.arena_seed = arena_seed
        self.pillars = pillars
        self._fixed_team = BOT_NAMES[:self.bots[1]]

    def _generate_family(self, rng: np.random.Generator) -> list[Scene]:
        map_rng = rng if self.procedural else np.random.default_rng([_FIXED_ARENA_SEED, self.arena_seed])
        layout = arena_layout(map_rng, self.arena, self.size, self.pillars)
        cells = layout.floor_cells()
        starts = scenes.pick_cells(map_rng, cells, 12)
        scene = scenes.make_scene(layout, starts[0], theme_offset=int(map_rng.integers(8)), light=self.light,
                                  rng=map_rng)
        for cell in starts:
            scene.level.add_thing(scenes.DEATHMATCH_START, *cell_center(cell),
                                  angle=scenes.open_angle(map_rng, layout, cell))
        items = [CLIP, CLIP, STIMPACK] + ([SHOTGUN, CHAINGUN, SHELLS, SHELLS] if self.weapons else [])
        item_cells = scenes.pick_cells(map_rng, cells, len(items), exclude=starts)
        for item, cell in zip(items, item_cells, strict=False):
            scene.level.add_thing(item, *cell_center(cell))
        scene.objects = tuple(item_cells)
        return [scene]

    def _episode_commands(self) -> list[str]:
        low, high = self.bots
        if self.procedural_bots:
            count = int(self.rng.integers(low, high + 1))
            team = [BOT_NAMES[i] for i in self.rng.choice(len(BOT_NAMES), size=count, replace=False)]
        else:
            team = list(self._fixed_team)
        self.team = tuple(team)
        return ["removebots"] + [f"addbot {name}" for name in team]

    def _task_reward(self, prev: np.ndarray, now: np.ndarray) -> float:
        frags = self.var("FRAGCOUNT", now) - self.var("FRAGCOUNT", prev)
        deaths = self.var("DEATHCOUNT", now) - self.var("DEATHCOUNT", prev)
        if frags > 0:
            self.count("frags", frags)
        if deaths > 0:
            self.count("deaths", deaths)
        return max(frags, 0.0) - deaths
