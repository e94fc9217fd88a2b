"""UDMF map text and PWAD files: the minimal Doom map format ViZDoom loads.

A map is a :class:`UdmfMap` (vertices, linedefs, sidedefs, sectors, things) that
serialises to a ``namespace = "zdoom";`` TEXTMAP lump; :func:`write_wad` packs any
number of maps into one PWAD. ZDoom builds the BSP nodes itself when it loads a map.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_SKILLS_AND_MODES = {f"skill{i}": True for i in range(1, 6)} | {"single": True, "coop": True, "dm": True}


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _block(kind: str, fields: Mapping[str, Any]) -> str:
    body = "".join(f"{key}={_format_value(value)};" for key, value in fields.items())
    return f"{kind}{{{body}}}\n"


@dataclasses.dataclass
class UdmfMap:
    """A ZDoom-namespace UDMF map built up by the ``add_*`` methods (which return indices)."""

    vertices: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    linedefs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sidedefs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    sectors: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    things: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    _vertex_index: dict[tuple[float, float], int] = dataclasses.field(default_factory=dict, repr=False)

    def add_vertex(self, x: float, y: float) -> int:
        """Returns the index of vertex (x, y), adding it once."""
        key = (float(x), float(y))
        if key not in self._vertex_index:
            self._vertex_index[key] = len(self.vertices)
            self.vertices.append(key)
        return self._vertex_index[key]

    def add_sector(self, floor: str, ceiling: str, floor_height: int = 0, ceiling_height: int = 128,
                   light: int = 192, **extra: Any) -> int:
        self.sectors.append({"heightfloor": floor_height, "heightceiling": ceiling_height,
                             "texturefloor": floor, "textureceiling": ceiling, "lightlevel": light, **extra})
        return len(self.sectors) - 1

    def add_sidedef(self, sector: int, middle: str = "-", **extra: Any) -> int:
        self.sidedefs.append({"sector": sector, "texturemiddle": middle, **extra})
        return len(self.sidedefs) - 1

    def add_line(self, start: tuple[float, float], end: tuple[float, float], front_sector: int,
                 texture: str, back_sector: int | None = None, **extra: Any) -> int:
        """Adds a wall from ``start`` to ``end``; its front (right-hand) side faces ``front_sector``.

        Without ``back_sector`` the line is a solid one-sided wall; with it, a passable
        two-sided line between two sectors.
        """
        line: dict[str, Any] = {"v1": self.add_vertex(*start), "v2": self.add_vertex(*end)}
        if back_sector is None:
            line["sidefront"] = self.add_sidedef(front_sector, texture)
            line["blocking"] = True
        else:
            line["sidefront"] = self.add_sidedef(front_sector, "-", texturetop=texture, texturebottom=texture)
            line["sideback"] = self.add_sidedef(back_sector, "-", texturetop=texture, texturebottom=texture)
            line["twosided"] = True
        line.update(extra)
        self.linedefs.append(line)
        return len(self.linedefs) - 1

    def add_thing(self, type_id: int, x: float, y: float, angle: int = 0, **extra: Any) -> int:
        """Adds a thing present in every skill level and game mode (unless ``extra`` overrides)."""
        self.things.append({"type": type_id, "x": float(x), "y": float(y), "angle": int(angle),
                            **_SKILLS_AND_MODES, **extra})
        return len(self.things) - 1

    def textmap(self) -> str:
        """The TEXTMAP lump's text."""
        parts = ['namespace="zdoom";\n']
        parts += [_block("thing", t) for t in self.things]
        parts += [_block("vertex", {"x": x, "y": y}) for x, y in self.vertices]
        parts += [_block("linedef", ln) for ln in self.linedefs]
        parts += [_block("sidedef", s) for s in self.sidedefs]
        parts += [_block("sector", s) for s in self.sectors]
        return "".join(parts)


def _lump_name(name: str) -> bytes:
    raw = name.upper().encode("ascii")
    if not 0 < len(raw) <= 8:
        raise ValueError(f"WAD lump names have 1 to 8 characters, got {name!r}.")
    return raw.ljust(8, b"\0")


def write_wad(path: str | Path, maps: Mapping[str, UdmfMap | str]) -> Path:
    """Writes a PWAD holding one ``NAME``/``TEXTMAP``/``ENDMAP`` lump group per map."""
    lumps: list[tuple[bytes, bytes]] = []
    for name, level in maps.items():
        text = level if isinstance(level, str) else level.textmap()
        lumps += [(_lump_name(name), b""), (b"TEXTMAP\0", text.encode("ascii")), (b"ENDMAP\0\0", b"")]
    data = bytearray(struct.pack("<4sii", b"PWAD", len(lumps), 0))
    directory = bytearray()
    for name, payload in lumps:
        directory += struct.pack("<ii8s", len(data), len(payload), name)
        data += payload
    struct.pack_into("<i", data, 8, len(data))
    data += directory
    path = Path(path)
    path.write_bytes(bytes(data))
    return path
