"""A synthetic store: realistic item text plus user sequences with real collaborative structure.

The embedded default dataset (works offline). Everything is a pure function of the seed and sizes.

Catalogue: items are (brand, leaf category, attribute, product noun, size) combinations drawn from a small store
taxonomy, giving titles like "Lumera Hydrating Face Moisturizer, 1.7 oz" and category paths like
("Beauty", "Skin Care", "Face", "Moisturizers"), plus brand, price and a one-sentence description.

Sequences carry signal that a good recommender can learn and popularity cannot:
  * taste clusters: each user belongs to one cluster, which prefers a few leaf categories and a few brands;
  * item-to-item transitions: each item has a few successors in complementary categories (shampoo -> conditioner),
    preferably of the same brand; with probability `follow_prob` the next item is a successor of the last one;
  * Zipf item popularity inside each cluster's preferences.
Because clusters and successors are defined through categories and brands, item text predicts behaviour, as it
does in real catalogues (what Semantic IDs rely on).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxrec.data.types import Catalog, DataError, Dataset

# department -> sub-category -> leaf -> (product nouns, attributes, sizes)
_TAXONOMY: dict[str, dict[str, dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]]] = {
    "Beauty": {
        "Skin Care": {
            "Moisturizers": (("Face Moisturizer", "Day Cream", "Night Cream"),
                             ("Hydrating", "Oil-Free", "Anti-Aging", "Sensitive Skin"), ("1.7 oz", "2.5 oz")),
            "Cleansers": (("Foaming Cleanser", "Cleansing Gel", "Micellar Water"),
                          ("Gentle", "Purifying", "Exfoliating"), ("5 fl oz", "8 fl oz")),
            "Sunscreens": (("Sunscreen Lotion", "Mineral Sunscreen", "Sun Spray"),
                           ("SPF 30", "SPF 50", "Water-Resistant"), ("3 oz", "6 oz")),
        },
        "Hair Care": {
            "Shampoos": (("Shampoo", "Clarifying Shampoo", "Dry Shampoo"),
                         ("Volumizing", "Color-Safe", "Sulfate-Free", "Argan Oil"), ("12 fl oz", "33.8 fl oz")),
            "Conditioners": (("Conditioner", "Leave-In Conditioner", "Hair Mask"),
                             ("Moisturizing", "Color-Safe", "Repairing"), ("12 fl oz", "8 oz")),
            "Styling": (("Hair Spray", "Styling Gel", "Texturizing Paste"),
                        ("Strong Hold", "Flexible Hold", "Matte"), ("4 oz", "10 oz")),
        },
        "Makeup": {
            "Nail Polish": (("Nail Lacquer", "Gel Polish", "Top Coat"),
                            ("Crimson", "Nude", "Glitter", "Quick-Dry"), ("0.5 fl oz",)),
            "Lips": (("Lipstick", "Lip Gloss", "Lip Liner"),
                     ("Matte", "Sheer", "Long-Wear", "Berry"), ("0.12 oz",)),
            "Eyes": (("Mascara", "Eyeliner", "Eyeshadow Palette"),
                     ("Waterproof", "Volumizing", "Smoky", "Black"), ("0.3 oz", "12 shades")),
        },
    },
    "Sports & Outdoors": {
        "Camping": {
            "Tents": (("Dome Tent", "Backpacking Tent", "Pop-Up Tent"),
                      ("2-Person", "4-Person", "Waterproof", "Ultralight"), ("Green", "Orange")),
            "Sleeping Bags": (("Sleeping Bag", "Mummy Bag", "Sleeping Pad"),
                              ("3-Season", "Compact", "Insulated"), ("Regular", "Long")),
            "Lighting": (("LED Headlamp", "Camping Lantern", "Flashlight"),
                         ("Rechargeable", "300 Lumen", "Waterproof"), ("2-Pack", "Single")),
        },
        "Fitness": {
            "Yoga": (("Yoga Mat", "Yoga Block", "Yoga Strap"),
                     ("Non-Slip", "Extra Thick", "Eco-Friendly"), ("6 mm", "Purple", "Blue")),
            "Strength": (("Adjustable Dumbbell", "Kettlebell", "Resistance Bands"),
                         ("Cast Iron", "Vinyl-Coated", "Heavy-Duty"), ("15 lb", "25 lb", "Set of 5")),
            "Hydration": (("Water Bottle", "Shaker Bottle", "Hydration Pack"),
                          ("Insulated", "BPA-Free", "Leak-Proof"), ("24 oz", "32 oz")),
        },
        "Cycling": {
            "Bike Accessories": (("Bike Light Set", "Bike Lock", "Bike Pump"),
                                 ("USB Rechargeable", "Heavy-Duty", "Compact"), ("Black", "Red")),
            "Helmets": (("Bike Helmet", "Mountain Bike Helmet", "Kids Helmet"),
                        ("Lightweight", "Adjustable", "Ventilated"), ("Medium", "Large")),
        },
    },
    "Toys & Games": {
        "Building Toys": {
            "Blocks": (("Building Blocks Set", "Magnetic Tiles", "Construction Kit"),
                       ("Classic", "Creative", "STEM"), ("100 Pieces", "250 Pieces")),
            "Model Kits": (("Model Car Kit", "Model Airplane Kit", "Robot Kit"),
                           ("Beginner", "Advanced", "Motorized"), ("1:24 Scale", "1:48 Scale")),
        },
        "Games": {
            "Board Games": (("Strategy Board Game", "Family Board Game", "Party Game"),
                            ("Cooperative", "Classic", "Deluxe Edition"), ("2-4 Players", "3-6 Players")),
            "Puzzles": (("Jigsaw Puzzle", "3D Puzzle", "Brain Teaser"),
                        ("Landscape", "Animal", "Challenging"), ("500 Pieces", "1000 Pieces")),
        },
        "Dolls & Figures": {
            "Action Figures": (("Action Figure", "Figure Playset", "Collector Figure"),
                               ("Poseable", "Deluxe", "Superhero"), ("6 inch", "12 inch")),
            "Dolls": (("Fashion Doll", "Baby Doll", "Dollhouse"),
                      ("Classic", "Interactive", "Wooden"), ("11.5 inch", "Set")),
        },
    },
}

_BRAND_SYLLABLES = ("lu", "me", "ra", "ko", "vi", "sa", "no", "ta", "ze", "pe", "li", "do", "ca", "ri", "mo", "ve")
_PRICE_RANGE = {"Beauty": (4.0, 45.0), "Sports & Outdoors": (9.0, 180.0), "Toys & Games": (7.0, 90.0)}


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    num_users: int = 3000
    num_items: int = 1200
    num_clusters: int = 48
    brands_per_department: int = 12
    mean_length: float = 9.0  # mean interactions per user (Amazon 5-core: about 9)
    min_length: int = 5  # like a 5-core dataset
    max_length: int = 60
    follow_prob: float = 0.4  # chance the next item is a successor of the previous one
    successors: int = 12
    zipf_exponent: float = 0.6
    seed: int = 0


def generate(config: SyntheticConfig = SyntheticConfig()) -> Dataset:
    """Generate a synthetic dataset (deterministic for a config)."""
    _validate(config)
    rng = np.random.default_rng(config.seed)
    leaves = [(dept, sub, leaf) for dept, subs in _TAXONOMY.items() for sub, ls in subs.items() for leaf in ls]
    brands = _brand_names(rng, len(_TAXONOMY) * config.brands_per_department)
    items = _make_items(rng, config, leaves, brands)
    catalog = _catalog(rng, items, leaves, brands)
    affinity = _cluster_affinity(rng, config, items, len(leaves), len(brands))
    successors = _successor_table(rng, config, items, len(leaves))
    sequences = _sample_sequences(rng, config, affinity, successors)
    user_ids = [f"user_{u:06d}" for u in range(config.num_users)]
    report = {"source": "synthetic", "config": dataclasses.asdict(config)}
    return Dataset.from_sequences("synthetic", catalog, user_ids, sequences, report)


def _validate(config: SyntheticConfig) -> None:
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        expected = int if field.type in ("int", int) else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (expected is int
                                                                                and not isinstance(value, int)):
            raise DataError(f"synthetic: option {field.name} must be {expected.__name__}, got {value!r}")
    for field in ("num_clusters", "brands_per_department", "successors"):
        if getattr(config, field) < 1:
            raise DataError(f"synthetic: {field} must be >= 1, got {getattr(config, field)}")
    max_brands = sum(len(_BRAND_SYLLABLES) ** n for n in (2, 3))
    if config.brands_per_department * len(_TAXONOMY) > max_brands:
        raise DataError(f"synthetic: brands_per_department={config.brands_per_department} needs more than the "
                        f"{max_brands} distinct brand names that can be made")
    if config.num_users < 1 or config.num_items < 2:
        raise DataError(f"synthetic: need num_users >= 1 and num_items >= 2, got {config.num_users}, "
                        f"{config.num_items}")
    if not 1 <= config.min_length <= config.max_length:
        raise DataError(f"synthetic: need 1 <= min_length <= max_length, got {config.min_length}, "
                        f"{config.max_length}")
    if config.mean_length < config.min_length:
        raise DataError(f"synthetic: mean_length {config.mean_length} < min_length {config.min_length}")
    if not 0.0 <= config.follow_prob <= 1.0:
        raise DataError(f"synthetic: follow_prob must be in [0, 1], got {config.follow_prob}")


def _brand_names(rng: np.random.Generator, count: int) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        syllables = rng.choice(_BRAND_SYLLABLES, size=rng.integers(2, 4))
        name = "".join(syllables).capitalize()
        if name not in names:
            names.append(name)
    return names


@dataclasses.dataclass(frozen=True)
class _Items:
    leaf: np.ndarray  # [N] leaf index
    brand: np.ndarray  # [N] brand index
    noun: np.ndarray
    attribute: np.ndarray
    size: np.ndarray


def _make_items(rng: np.random.Generator, config: SyntheticConfig, leaves: list, brands: list[str]) -> _Items:
    """Distinct (leaf, brand, noun, attribute, size) combinations; brands belong to one department each."""
    departments = list(_TAXONOMY)
    seen: set[tuple[int, ...]] = set()
    rows: list[tuple[int, ...]] = []
    attempts = 0
    while len(rows) < config.num_items:
        attempts += 1
        if attempts > 50 * config.num_items:
            raise DataError(f"synthetic: cannot make {config.num_items} distinct items from the taxonomy")
        leaf = int(rng.integers(len(leaves)))
        dept = departments.index(leaves[leaf][0])
        brand = dept * config.brands_per_department + int(rng.integers(config.brands_per_department))
        nouns, attributes, sizes = _TAXONOMY[leaves[leaf][0]][leaves[leaf][1]][leaves[leaf][2]]
        key = (leaf, brand, int(rng.integers(len(nouns))), int(rng.integers(len(attributes))),
               int(rng.integers(len(sizes))))
        if key not in seen:
            seen.add(key)
            rows.append(key)
    table = np.array(rows, dtype=np.int64)
    return _Items(*table.T)


def _catalog(rng: np.random.Generator, items: _Items, leaves: list, brands: list[str]) -> Catalog:
    titles, categories, descriptions, prices, raw_ids = [], [], [], [], []
    for index in range(len(items.leaf)):
        dept, sub, leaf = leaves[items.leaf[index]]
        nouns, attributes, sizes = _TAXONOMY[dept][sub][leaf]
        brand = brands[items.brand[index]]
        noun, attribute, size = nouns[items.noun[index]], attributes[items.attribute[index]], sizes[items.size[index]]
        titles.append(f"{brand} {attribute} {noun}, {size}")
        categories.append(((dept, sub, leaf),))
        descriptions.append(f"{attribute} {noun.lower()} by {brand}, {size}, in {sub.lower()}.")
        low, high = _PRICE_RANGE[dept]
        prices.append(round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 2))
        raw_ids.append(f"SYN{index + 1:07d}")
    return Catalog(tuple(raw_ids), tuple(titles), tuple(categories), tuple(brands[b] for b in items.brand),
                   tuple(prices), tuple(descriptions))


def _cluster_affinity(rng: np.random.Generator, config: SyntheticConfig, items: _Items, num_leaves: int,
                      num_brands: int) -> np.ndarray:
    """[clusters, items] sampling distribution: preferred leaves x preferred brands x Zipf popularity."""
    leaf_pref = rng.dirichlet(np.full(num_leaves, 0.15), size=config.num_clusters)
    brand_pref = rng.dirichlet(np.full(num_brands, 0.3), size=config.num_clusters)
    popularity = 1.0 / (1.0 + rng.permutation(len(items.leaf))) ** config.zipf_exponent
    weights = leaf_pref[:, items.leaf] * (0.2 + brand_pref[:, items.brand]) * popularity[None, :]
    weights += 1e-3 * weights.mean(axis=1, keepdims=True)  # every item reachable from every cluster
    return weights / weights.sum(axis=1, keepdims=True)


def _successor_table(rng: np.random.Generator, config: SyntheticConfig, items: _Items,
                     num_leaves: int) -> np.ndarray:
    """[items, successors] complementary next items: a complement leaf per leaf, same brand preferred."""
    complement = np.stack([rng.permutation(num_leaves) for _ in range(2)], axis=1)  # 2 complement leaves per leaf
    num_items = len(items.leaf)
    table = np.empty((num_items, config.successors), dtype=np.int64)
    for item in range(num_items):
        allowed = np.isin(items.leaf, complement[items.leaf[item]]) | (items.leaf == items.leaf[item])
        allowed[item] = False
        candidates = np.flatnonzero(allowed)
        if not len(candidates):
            candidates = np.delete(np.arange(num_items), item)
        weight = np.where(items.brand[candidates] == items.brand[item], 8.0, 1.0)
        table[item] = rng.choice(candidates, size=config.successors, p=weight / weight.sum(),
                                 replace=len(candidates) < config.successors)
    return table


def _sample_sequences(rng: np.random.Generator, config: SyntheticConfig, affinity: np.ndarray,
                      successors: np.ndarray) -> list[np.ndarray]:
    """All users advance one step at a time (vectorised over users)."""
    num_users, (num_clusters, num_items) = config.num_users, affinity.shape
    clusters = rng.integers(num_clusters, size=num_users)
    extra = config.mean_length - config.min_length
    lengths = config.min_length + rng.geometric(1.0 / (1.0 + extra), size=num_users) - 1
    lengths = np.minimum(lengths, config.max_length)
    # Sampling from each user's cluster distribution via one flat CDF: cluster c owns the range [c, c + 1).
    flat_cdf = (np.cumsum(affinity, axis=1) + np.arange(num_clusters)[:, None]).ravel()

    def from_cluster() -> np.ndarray:
        draws = np.searchsorted(flat_cdf, clusters + rng.random(num_users) * 0.999999, side="right")
        return np.minimum(draws - clusters * num_items, num_items - 1)

    steps = np.empty((num_users, int(lengths.max())), dtype=np.int64)
    steps[:, 0] = from_cluster()
    for t in range(1, steps.shape[1]):
        follow = rng.random(num_users) < config.follow_prob
        # Successor k is picked with weight 1 / (k + 1): a few strong complements and a long tail.
        rank_weights = 1.0 / np.arange(1, config.successors + 1)
        picks = rng.choice(config.successors, size=num_users, p=rank_weights / rank_weights.sum())
        chosen = successors[steps[:, t - 1], picks]
        steps[:, t] = np.where(follow, chosen, from_cluster())
    return [steps[u, : lengths[u]] + 1 for u in range(num_users)]  # item ids are 1-based
