"""ImageNet classes (the item classifier's labels) to household categories, where an obvious mapping exists."""

from __future__ import annotations

CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "kitchen": ("espresso", "coffee", "mug", "teapot", "toaster", "microwave", "refrigerator", "dishwasher",
                "frying pan", "wok", "plate", "cup", "kettle", "spatula", "ladle", "pot", "crock", "strainer",
                "can opener", "corkscrew", "dutch oven", "waffle iron", "mixing bowl", "measuring cup", "caldron",
                "stove", "rotisserie", "pizza", "bagel", "cutting", "cleaver", "wine bottle", "beer bottle"),
    "laundry": ("washer", "iron", "jersey", "sweatshirt", "cardigan", "jean", "sock", "apron", "clothes"),
    "bathroom": ("bathtub", "toilet", "shower", "soap dispenser", "bath towel", "lotion", "medicine chest"),
    "cleaning": ("vacuum", "broom", "mop", "dustpan", "bucket", "paper towel", "swab"),
    "maintenance": ("hammer", "screwdriver", "drill", "chain saw", "wrench", "plunger", "ladder", "nail", "screw",
                    "hatchet", "paintbrush", "padlock", "switch", "radiator", "space heater", "tool kit"),
    "garden": ("lawn mower", "rake", "shovel", "flowerpot", "daisy", "hose", "wheelbarrow", "hay", "greenhouse",
               "pot plant", "sunflower", "picket fence", "birdhouse", "watering"),
    "pets": ("terrier", "retriever", "spaniel", "shepherd", "poodle", "hound", "collie", "beagle", "pug",
             "labrador", "husky", "dachshund", "chihuahua", "cat", "kitten", "tabby", "hamster", "goldfish",
             "parrot", "rabbit", "guinea pig", "dog"),
    "kids": ("teddy", "crib", "cradle", "toyshop", "rocking chair", "pinwheel", "jigsaw puzzle", "balloon"),
    "shopping": ("shopping cart", "shopping basket", "grocery store", "price tag"),
    "health": ("pill bottle", "band aid", "syringe", "stethoscope", "thermometer"),
    "car": ("car", "convertible", "minivan", "jeep", "limousine", "tow truck", "car wheel", "pickup", "cab",
            "station wagon", "tire"),
}


def category_of(label: str) -> str | None:
    """The household category of an ImageNet label, or None: the longest keyword found wins."""
    text = label.lower()
    best: tuple[int, str] | None = None
    for category, words in CATEGORY_WORDS.items():
        for w in words:
            if w in text and (best is None or len(w) > best[0]):
                best = (len(w), category)
    return best[1] if best else None
