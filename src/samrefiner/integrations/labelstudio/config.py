"""The parts of a Label Studio labelling config the backend reads: its image object tags
and the control tags that draw regions on them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from samrefiner.io.errors import InputError

__all__ = ["MASK_TYPES", "REGION_TYPES", "Control", "LabelConfig"]

#: Result types the backend refines, by the control tag (lower case) that makes them.
REGION_TYPES = {
    "brushlabels": "brushlabels",
    "brush": "brush",
    "polygonlabels": "polygonlabels",
    "polygon": "polygon",
    "rectanglelabels": "rectanglelabels",
    "rectangle": "rectangle",
}
#: Result types a refined mask can be written as: brush first, then polygon.
MASK_TYPES = ("brushlabels", "brush", "polygonlabels", "polygon")


@dataclass(frozen=True)
class Control:
    """One control tag: ``<BrushLabels name="tag" toName="image">`` is
    ``Control("tag", "brushlabels", "image")``."""

    name: str
    type: str
    to_name: str


@dataclass(frozen=True)
class LabelConfig:
    """A labelling config, read.

    Attributes:
        controls: every control tag (any tag with ``name`` and ``toName``), by name.
        images: the data key of each ``<Image>`` tag (``value="$image"`` is ``image``),
            by the tag's name.
    """

    controls: dict[str, Control]
    images: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> LabelConfig:
        """Read the XML of a labelling config.

        Raises:
            InputError: not XML.
        """
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise InputError(f"label_config: not a labelling config (XML): {exc}") from exc
        controls: dict[str, Control] = {}
        images: dict[str, str] = {}
        for element in root.iter():
            name = element.get("name")
            if not name:
                continue
            to_name = element.get("toName")
            if to_name:
                # toName may list several objects; regions name the one they are on.
                controls[name] = Control(name, element.tag.lower(), to_name)
            elif element.tag.lower() == "image" and element.get("value", "").startswith("$"):
                images[name] = element.get("value", "")[1:]
        return cls(controls, images)

    def mask_control(self, to_name: str, kinds: tuple[str, ...]) -> Control | None:
        """The first control of a type in ``kinds`` (in their order) drawing on
        ``to_name``, or None."""
        for kind in kinds:
            for control in self.controls.values():
                if control.type == kind and to_name in control.to_name.split(","):
                    return control
        return None
