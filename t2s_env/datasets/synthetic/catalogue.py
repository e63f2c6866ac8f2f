"""Category catalogue and questions: what each category is called, the words its questions
must avoid, its (question, rationale) templates, and the questions asked of one image."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

QUESTIONS_PER_IMAGE = (3, 5)


@dataclass(frozen=True)
class Category:
    """A target category: its name, the words its questions must avoid, and its
    (question, answer-rationale) templates."""

    name: str
    noun: str
    plural: str
    #: category name and obvious synonyms; no question of this category may contain them
    banned: tuple[str, ...]
    #: (question, rationale); the answer reads "The <noun>, <rationale>."
    qa: tuple[tuple[str, str], ...]


CATEGORIES: tuple[Category, ...] = (
    Category("runway", "runway", "runways",
             ("runway", "airstrip", "landing strip", "airfield", "airport", "tarmac"), (
        ("Where could a plane take off?", "the long paved strip from which aircraft take off"),
        ("Where would a jet touch down at the end of its flight?", "the paved strip built for landing aircraft"),
        ("Which long straight surface lets aircraft gather speed before lifting off?", "the surface where aircraft accelerate to take off"),
        ("Where would a pilot line up for departure?", "the strip a pilot lines up on before departure"),
        ("Which surface is marked with threshold stripes for arriving aircraft?", "marked with threshold stripes and a dashed centre line"),
        ("Where could an airliner land safely?", "the long paved surface built for landing airliners"),
    )),
    Category("airplane", "airplane", "airplanes",
             ("airplane", "aeroplane", "aircraft", "plane", "jet", "airliner"), (
        ("What here could fly passengers to another city?", "which carry passengers through the air"),
        ("Which objects have wings and could carry travellers through the sky?", "the winged machines that fly travellers"),
        ("What is parked on the apron waiting to board passengers?", "parked on the apron before boarding"),
        ("Which vehicles in this scene are able to fly?", "the only vehicles here that can fly"),
        ("What could be refuelled before a long-haul flight?", "refuelled before a long flight"),
        ("Which machines could take off from a long paved strip?", "able to take off from a long paved strip"),
    )),
    Category("storage_tank", "storage tank", "storage tanks",
             ("storage tank", "tank", "silo", "cistern", "tanker"), (
        ("Where might oil or fuel be kept in bulk?", "built to hold oil or fuel in bulk"),
        ("Which round structures could hold large amounts of liquid?", "round containers for large volumes of liquid"),
        ("Where could a refinery keep its crude before processing?", "where crude is kept before processing"),
        ("What cylindrical structures might store chemicals or gas?", "cylinders that store chemicals or gas"),
        ("Which structures store liquids for the nearby industry?", "storing liquids for the industrial site"),
    )),
    Category("harbor", "harbour", "harbour structures",
             ("harbor", "harbour", "port", "dock", "pier", "wharf", "quay", "marina", "jetty"), (
        ("Where might ships be repaired or unloaded?", "where ships moor to be unloaded or repaired"),
        ("Where could a cargo vessel moor to unload its freight?", "where cargo vessels moor to unload"),
        ("Which structures let boats tie up along the shore?", "built out from the shore for boats to tie up"),
        ("Where would a ferry let its passengers off?", "where ferries land their passengers"),
        ("Where could fishermen land their catch?", "where fishing boats land their catch"),
        ("Which platforms reach out into the water for mooring vessels?", "the platforms reaching into the water for mooring"),
    )),
    Category("ship", "ship", "ships",
             ("ship", "boat", "vessel", "ferry", "tanker", "yacht", "freighter"), (
        ("What could carry cargo across the water?", "which carry cargo across the water"),
        ("What is floating on the water and could carry passengers?", "floating on the water and able to carry passengers"),
        ("Which objects could sail to another coast?", "able to sail to another coast"),
        ("What might be moving goods over the water?", "moving goods over the water"),
        ("Which craft on the water could a crew steer?", "steered by a crew on the water"),
        ("What could a fisherman use to go out to sea?", "what a fisherman takes out to sea"),
    )),
    Category("building", "building", "buildings",
             ("building", "house", "home", "dwelling", "residence", "warehouse"), (
        ("Where could people live or work?", "where people live or work"),
        ("Which roofed structures could shelter a family from the rain?", "roofed shelters from the rain"),
        ("Where might office workers spend their day?", "where office workers spend their day"),
        ("Which constructions cast the blocky shadows on the ground?", "casting the blocky shadows"),
        ("Where could a shopkeeper sell goods indoors?", "where goods can be sold indoors"),
        ("Which roofs could hold a rooftop garden?", "roofed structures that could carry a garden"),
    )),
    Category("road", "road", "roads",
             ("road", "street", "highway", "motorway", "avenue", "freeway"), (
        ("Which paths could cars drive along?", "the paved routes for cars"),
        ("Where could a delivery truck travel between places?", "the paved routes a truck can use"),
        ("What paved routes connect the different parts of this area?", "connecting the parts of this area"),
        ("Where could a cyclist ride to the next town?", "leading on to the next town"),
        ("Which surfaces carry vehicle traffic?", "carrying the vehicle traffic"),
    )),
    Category("river", "river", "rivers",
             ("river", "stream", "creek", "brook", "canal", "waterway"), (
        ("What flowing water could a kayak travel down?", "the flowing water a kayak can follow"),
        ("Where does water flow through this landscape?", "carrying water through the landscape"),
        ("Which winding water course could flood after heavy rain?", "the winding course that floods after heavy rain"),
        ("What natural channel carries water across the land?", "the natural channel of flowing water"),
        ("Where would rainwater from the hills eventually drain?", "where rainwater from the hills drains"),
    )),
    Category("lake", "lake", "lakes",
             ("lake", "pond", "reservoir", "pool", "lagoon", "mere"), (
        ("Which still body of water could people fish in?", "the still water people can fish in"),
        ("Where could a family go boating on calm water?", "the calm water suitable for boating"),
        ("What enclosed water body could supply drinking water?", "an enclosed body of water that can supply drinking water"),
        ("Where might ducks gather on open water?", "the open water where ducks gather"),
        ("Which calm water surface is surrounded by land?", "the calm water enclosed by land"),
    )),
    Category("farmland", "farmland", "farmland plots",
             ("farmland", "farm", "field", "cropland", "arable", "agricultural"), (
        ("Where might crops be grown?", "where crops are grown"),
        ("Where could a tractor plough the soil?", "soil worked by tractors"),
        ("Which cultivated plots could produce wheat or maize?", "cultivated plots for wheat or maize"),
        ("Where would a harvester work in autumn?", "where harvesters work in autumn"),
        ("Which land is planted in neat rows?", "planted in neat rows"),
    )),
    Category("sports_field", "sports ground", "sports grounds",
             ("sport", "sports", "field", "pitch", "stadium", "track", "arena", "ground"), (
        ("Where could a football match be played?", "marked out for football matches"),
        ("Where might students run laps during a PE lesson?", "where students run laps"),
        ("Which green rectangle with white lines hosts team games?", "the lined green area for team games"),
        ("Where could athletes train for a sprint race?", "where athletes train for sprints"),
        ("Where would spectators watch a weekend match?", "where spectators watch matches"),
    )),
    Category("swimming_pool", "swimming pool", "swimming pools",
             ("swimming pool", "pool", "swimming", "swim", "lido"), (
        ("Where could residents take a dip on a hot afternoon?", "where residents take a dip"),
        ("Which small bright blue basins are meant for bathing?", "the bright blue basins for bathing"),
        ("Where could children splash in the backyard?", "where children splash in the backyard"),
        ("What could a lifeguard be watching over?", "what a lifeguard watches over"),
        ("Where might someone practise the backstroke?", "where someone can practise the backstroke"),
    )),
    Category("tennis_court", "tennis court", "tennis courts",
             ("tennis", "court", "badminton"), (
        ("Where could two players hit a ball over a net?", "where players hit a ball over a net"),
        ("Where could a doubles match with rackets be played?", "marked out for doubles matches with rackets"),
        ("Which small hard-surfaced rectangles are marked out for racket games?", "hard-surfaced and lined for racket games"),
        ("Where might someone practise their serve?", "where a serve can be practised"),
        ("Where could a coach teach forehands and volleys?", "where forehands and volleys are taught"),
    )),
    Category("bridge", "bridge", "bridges",
             ("bridge", "overpass", "viaduct", "flyover"), (
        ("Where can traffic cross over the water?", "where traffic crosses the water"),
        ("Which structure lets cars reach the opposite bank?", "carrying cars to the opposite bank"),
        ("Where does the route span the flowing water?", "where the route spans the water"),
        ("Where could pedestrians walk across without getting wet?", "where people cross the water dry-shod"),
        ("Which crossing would boats have to pass underneath?", "the crossing that boats pass under"),
    )),
    Category("solar_farm", "solar farm", "solar farms",
             ("solar", "panel", "photovoltaic", "pv"), (
        ("What could turn sunlight into electricity?", "turning sunlight into electricity"),
        ("Where might renewable power be generated from the sun?", "generating renewable power from the sun"),
        ("Which dark arrays are angled to catch the daylight?", "the dark arrays angled to catch daylight"),
        ("Where is electricity harvested from sunshine?", "where electricity is harvested from sunshine"),
        ("Which installation could supply green energy to the grid?", "supplying green energy to the grid"),
    )),
    Category("parking_lot", "parking lot", "parking lots",
             ("parking", "car park", "lot", "garage"), (
        ("Where could visitors leave their cars?", "where visitors leave their cars"),
        ("Where might shoppers stop their vehicles for a few hours?", "where shoppers leave their vehicles"),
        ("Which paved area is marked out with rows of bays for cars?", "the paved area lined with bays for cars"),
        ("Where could a driver find an empty space for the car?", "where drivers find a free space"),
        ("Where are vehicles left standing in neat rows?", "where vehicles stand in rows"),
    )),
    Category("greenhouse", "greenhouse", "greenhouses",
             ("greenhouse", "glasshouse", "polytunnel", "hothouse", "conservatory"), (
        ("Where might vegetables be grown under cover all year?", "covered structures for year-round growing"),
        ("Which bright translucent structures protect plants from frost?", "the translucent structures that keep frost off plants"),
        ("Where could tomatoes ripen in winter?", "where tomatoes ripen in winter"),
        ("Which glazed sheds keep seedlings warm?", "the glazed sheds that keep seedlings warm"),
        ("Where could a gardener raise delicate plants indoors?", "where delicate plants are raised under cover"),
    )),
    Category("forest", "forest", "forest patches",
             ("forest", "wood", "woods", "woodland", "tree", "grove", "jungle", "copse"), (
        ("Where could timber be harvested?", "where timber can be harvested"),
        ("Where might deer hide under a dense canopy?", "the dense canopy where deer hide"),
        ("Which areas could a lumberjack work in?", "where a lumberjack works"),
        ("Where could hikers find shade under leafy cover?", "the leafy cover that gives shade"),
        ("Which dense green areas absorb the most carbon?", "the dense green cover absorbing carbon"),
    )),
)

CATEGORY_BY_NAME: dict[str, Category] = {c.name: c for c in CATEGORIES}
CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in CATEGORIES)
#: label-map value of each category (0 is background)
LABEL_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(CATEGORY_NAMES)}
#: categories that cannot be drawn without others (a bridge joins two roads over a river)
REQUIRES: dict[str, tuple[str, ...]] = {"bridge": ("road", "river")}
#: categories an image must not draw when its question asks about the key and the answer
#: is "none": each could answer some question of the key (a road drawn up to a river looks
#: like a crossing; a lake is where rainwater drains; a lake is somewhere to take a dip)
CONFUSABLE: dict[str, tuple[str, ...]] = {
    "bridge": ("river",),
    "runway": ("airplane",),
    "lake": ("river", "harbor", "ship", "swimming_pool"),
    "river": ("lake", "harbor", "ship"),
    "swimming_pool": ("lake",),
    "road": ("runway", "parking_lot"),
    "farmland": ("greenhouse",),
    "greenhouse": ("farmland",),
    "sports_field": ("tennis_court",),
    "tennis_court": ("sports_field",),
}
#: optional lead-ins that vary the wording of a question
_PREFIXES = ("", "", "", "", "In this aerial image, ", "Looking at this scene from above, ",
             "From this overhead view, ", "In this picture, ")


def banned_terms(category: str) -> tuple[str, ...]:
    """Words a question about ``category`` must not contain: its name (with ``_`` as a
    space), its noun and its listed synonyms."""
    c = CATEGORY_BY_NAME[category]
    return tuple(dict.fromkeys((c.name.replace("_", " "), c.noun, *c.banned)))


def names_category(question: str, category: str) -> bool:
    """True when ``question`` contains a banned term of ``category`` as a whole word
    (plural ``s``/``es`` included)."""
    text = question.lower()
    return any(re.search(rf"\b{re.escape(t.lower())}(s|es)?\b", text) for t in banned_terms(category))


def _questions(rng: np.random.Generator, category: str, instances: int, empty: bool) -> tuple[list[str], list[str]]:
    cat = CATEGORY_BY_NAME[category]
    lo, hi = QUESTIONS_PER_IMAGE
    k = int(rng.integers(lo, min(hi, len(cat.qa)) + 1))
    picks = rng.choice(len(cat.qa), size=k, replace=False)
    questions, answers = [], []
    noun = cat.noun if instances == 1 else cat.plural
    for i in picks:
        q, why = cat.qa[int(i)]
        prefix = _PREFIXES[int(rng.integers(len(_PREFIXES)))]
        questions.append(prefix + q[0].lower() + q[1:] if prefix else q)
        answers.append(f"The {noun}, {why}.")
    return questions, ([] if empty else answers)
