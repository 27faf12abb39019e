"""The product taxonomy of the embedded world: leaf categories with their vocabulary.

Each leaf says how its products are named (``nouns``), which words shoppers use for it that never
appear in product text (``synonyms``, so that only meaning can answer them), its attributes,
price level, brands and complementary leaves. ``course_lib.data`` generates the world from this.
"""
from __future__ import annotations

from dataclasses import dataclass

# size kinds: how a leaf's size is written (clean form first)
VOLUME, SCREEN, CLOTHING, SHOE, BED, CAPACITY, NO_SIZE = (
    "volume", "screen", "clothing", "shoe", "bed", "capacity", "none")


@dataclass(frozen=True)
class Leaf:
    """One leaf category and the words and numbers its products are made of."""

    path: tuple[str, ...]
    noun: str                       # as written in titles, e.g. "In-Ear Headphones"
    synonyms: tuple[str, ...]       # query-only words, absent from every product text
    features: tuple[str, ...]       # title adjectives, e.g. "Wireless"
    materials: tuple[str, ...]
    colors: tuple[str, ...]
    size_kind: str
    sizes: tuple[str, ...]          # clean sizes, e.g. "1500 ml", "15.6 in", "M"
    median_price: float
    brands: tuple[str, ...]
    complements: tuple[str, ...]    # names (``noun``) of complementary leaves
    uses: tuple[str, ...]           # "ideal for ..." phrases for descriptions
    model_in_title: bool = True     # electronics and appliances carry model numbers
    audience: str = ""              # "Women's", "Men's" or ""

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def path_str(self) -> str:
        return " > ".join(self.path)


BASIC = ("Black", "White", "Gray", "Blue", "Red", "Green")
APPAREL = ("Black", "White", "Navy", "Red", "Green", "Beige", "Pink", "Gray")

LEAVES: tuple[Leaf, ...] = (
    # ---------------------------------------------------------------- Electronics
    Leaf(("Electronics", "Audio", "In-Ear Headphones"), "In-Ear Headphones",
         ("earbuds", "earphones"),
         ("Wireless", "Noise Cancelling", "Sweatproof", "Bluetooth 5.3", "Sport", "Bass Boost"),
         ("Plastic", "Silicone", "Aluminum"), BASIC, "none", (), 60.0,
         ("Sonora", "Aurex", "Kinetiq", "Vibe Lab", "Northtone"),
         ("Phone Case", "USB-C Charger"), ("the gym", "commuting", "running", "calls on the go")),
    Leaf(("Electronics", "Audio", "Over-Ear Headphones"), "Over-Ear Headphones",
         ("cans", "headset"),
         ("Wireless", "Noise Cancelling", "Foldable", "Hi-Res", "Studio", "Bluetooth 5.3"),
         ("Plastic", "Leather", "Aluminum"), BASIC, "none", (), 120.0,
         ("Sonora", "Aurex", "Northtone", "Vibe Lab", "Helix Audio"),
         ("Laptop", "USB-C Charger"), ("long flights", "home studios", "gaming", "focus at work")),
    Leaf(("Electronics", "Audio", "Portable Speakers"), "Portable Speaker",
         ("boombox", "soundbox"),
         ("Waterproof", "Bluetooth 5.3", "Rugged", "Party", "Compact", "360-Degree"),
         ("Plastic", "Fabric", "Rubber"), BASIC, "none", (), 70.0,
         ("Sonora", "Kinetiq", "Helix Audio", "Boomtown", "Northtone"),
         ("Power Bank",), ("beach days", "pool parties", "camping trips", "the kitchen")),
    Leaf(("Electronics", "Phone Accessories", "Phone Cases"), "Phone Case",
         ("smartphone cover", "mobile cover"),
         ("Shockproof", "Slim", "Clear", "MagSafe Compatible", "Wallet", "Rugged"),
         ("Silicone", "Leather", "Polycarbonate", "TPU"), BASIC + ("Pink", "Purple"), "none", (),
         18.0, ("Armorly", "Shieldon", "Casewise", "Kinetiq"),
         ("USB-C Charger", "Power Bank"), ("daily protection", "drop protection", "a slim pocket fit")),
    Leaf(("Electronics", "Phone Accessories", "Chargers"), "USB-C Charger",
         ("power adapter", "wall brick"),
         ("Fast Charging", "65W", "20W", "Dual Port", "GaN", "Foldable Plug"),
         ("Plastic",), ("Black", "White"), "none", (), 25.0,
         ("Voltix", "Ampere Co", "Kinetiq", "ChargeUp"),
         ("Phone Case", "Power Bank"), ("phones and tablets", "travel", "the desk", "laptops")),
    Leaf(("Electronics", "Phone Accessories", "Power Banks"), "Power Bank",
         ("external battery", "portable juice pack"),
         ("Fast Charging", "Slim", "Dual USB", "Solar", "LED Display", "Magnetic"),
         ("Plastic", "Aluminum"), BASIC, CAPACITY, ("5000 mAh", "10000 mAh", "20000 mAh", "26800 mAh"),
         35.0, ("Voltix", "Ampere Co", "ChargeUp", "Kinetiq"),
         ("USB-C Charger", "Phone Case"), ("travel", "festivals", "emergencies", "camping")),
    Leaf(("Electronics", "Computers", "Laptops"), "Laptop",
         ("notebook computer", "ultrabook"),
         ("Lightweight", "Gaming", "Touchscreen", "2-in-1", "16GB RAM", "1TB SSD"),
         ("Aluminum", "Plastic", "Magnesium"), ("Silver", "Black", "Gray", "Blue"), SCREEN,
         ("13.3 in", "14 in", "15.6 in", "17.3 in"), 850.0,
         ("Zentro", "Lumina", "Corelink", "Byteforge"),
         ("Wireless Mouse", "Mechanical Keyboard", "Monitor", "Backpack"),
         ("students", "remote work", "gaming", "video editing")),
    Leaf(("Electronics", "Computers", "Keyboards"), "Mechanical Keyboard",
         ("clicky typing board",),
         ("RGB Backlit", "Wireless", "Hot-Swappable", "Compact 75%", "Tenkeyless", "Quiet"),
         ("Aluminum", "Plastic"), ("Black", "White", "Gray", "Pink"), "none", (), 80.0,
         ("Keyforge", "Corelink", "Byteforge", "Typewell"),
         ("Wireless Mouse", "Laptop"), ("programmers", "gaming", "writers", "the office")),
    Leaf(("Electronics", "Computers", "Mice"), "Wireless Mouse",
         ("pointing device",),
         ("Ergonomic", "Silent Click", "Rechargeable", "Gaming", "Vertical", "Bluetooth"),
         ("Plastic", "Rubber"), ("Black", "White", "Gray", "Pink"), "none", (), 30.0,
         ("Keyforge", "Corelink", "Byteforge", "Typewell"),
         ("Mechanical Keyboard", "Laptop"), ("the office", "gaming", "travel", "small hands")),
    Leaf(("Electronics", "Computers", "Monitors"), "Monitor",
         ("computer screen", "display panel"),
         ("4K", "Curved", "144Hz", "IPS", "USB-C", "Ultrawide"),
         ("Plastic", "Aluminum"), ("Black", "Silver", "White"), SCREEN,
         ("24 in", "27 in", "32 in", "34 in"), 280.0,
         ("Zentro", "Lumina", "Viewmax", "Corelink"),
         ("Laptop", "Mechanical Keyboard"), ("home offices", "gaming", "photo editing", "coding")),
    # ---------------------------------------------------------------- Home & Kitchen
    Leaf(("Home & Kitchen", "Kitchen", "Frying Pans"), "Frying Pan",
         ("skillet",),
         ("Nonstick", "Induction Ready", "Oven Safe", "Deep", "Ceramic Coated", "Pre-Seasoned"),
         ("Cast Iron", "Stainless Steel", "Aluminum", "Carbon Steel"), ("Black", "Gray", "Red", "Blue"),
         "none", (), 35.0, ("Ferro & Co", "Panwise", "Chefline", "Hearthmade"),
         ("Electric Kettle", "Coffee Maker"), ("searing steak", "eggs", "everyday cooking", "stir-fries"),
         model_in_title=False),
    Leaf(("Home & Kitchen", "Kitchen", "Coffee Makers"), "Coffee Maker",
         ("drip brewer", "java machine"),
         ("Programmable", "12-Cup", "Single Serve", "Thermal Carafe", "Pour Over", "Built-in Grinder"),
         ("Stainless Steel", "Plastic", "Glass"), ("Black", "Silver", "White", "Red"), VOLUME,
         ("1000 ml", "1250 ml", "1500 ml", "1800 ml"), 70.0,
         ("Brewster", "Chefline", "Morning Co", "Hearthmade"),
         ("Electric Kettle", "Water Bottle"), ("busy mornings", "offices", "families", "guests")),
    Leaf(("Home & Kitchen", "Kitchen", "Electric Kettles"), "Electric Kettle",
         ("water boiler", "hot water jug"),
         ("Cordless", "Temperature Control", "Rapid Boil", "Keep Warm", "Gooseneck", "BPA-Free"),
         ("Stainless Steel", "Glass", "Plastic"), ("Black", "Silver", "White", "Red", "Green"), VOLUME,
         ("800 ml", "1000 ml", "1500 ml", "1700 ml"), 40.0,
         ("Brewster", "Chefline", "Morning Co", "Hearthmade"),
         ("Coffee Maker", "Frying Pan"), ("tea lovers", "pour-over coffee", "instant noodles", "offices")),
    Leaf(("Home & Kitchen", "Kitchen", "Water Bottles"), "Water Bottle",
         ("hydration flask", "drinking canteen"),
         ("Insulated", "Leakproof", "BPA-Free", "Wide Mouth", "Straw Lid", "Collapsible"),
         ("Stainless Steel", "Plastic", "Glass", "Silicone"), BASIC + ("Pink", "Purple"), VOLUME,
         ("500 ml", "750 ml", "1000 ml", "1500 ml"), 22.0,
         ("Hydrawell", "Trailmark", "Summit Gear", "Morning Co"),
         ("Backpack", "Yoga Mat"), ("the gym", "hiking", "school", "the office"), model_in_title=False),
    Leaf(("Home & Kitchen", "Bedding", "Sheet Sets"), "Bed Sheet Set",
         ("bedding linens", "bedclothes"),
         ("Deep Pocket", "Wrinkle Resistant", "Cooling", "Breathable", "400 Thread Count", "Hypoallergenic"),
         ("Cotton", "Linen", "Bamboo", "Microfiber"), ("White", "Gray", "Beige", "Navy", "Green", "Pink"),
         BED, ("Twin", "Full", "Queen", "King"), 45.0,
         ("Dreamweave", "Linenly", "Cozyhaus", "Slumberco"),
         ("Pillow",), ("hot sleepers", "guest rooms", "all seasons", "sensitive skin"), model_in_title=False),
    Leaf(("Home & Kitchen", "Bedding", "Pillows"), "Pillow",
         ("cushion for sleeping", "headrest for bed"),
         ("Memory Foam", "Cooling", "Adjustable Loft", "Side Sleeper", "Hypoallergenic", "Down Alternative"),
         ("Memory Foam", "Cotton", "Bamboo", "Down"), ("White", "Gray", "Beige"), BED,
         ("Standard", "Queen", "King"), 35.0,
         ("Dreamweave", "Cozyhaus", "Slumberco", "Linenly"),
         ("Bed Sheet Set",), ("neck pain", "side sleepers", "back sleepers", "hot nights"),
         model_in_title=False),
    Leaf(("Home & Kitchen", "Furniture", "Office Chairs"), "Office Chair",
         ("desk seat", "computer seat"),
         ("Ergonomic", "Mesh Back", "Lumbar Support", "Adjustable Armrests", "Reclining", "Swivel"),
         ("Mesh", "Leather", "Fabric"), ("Black", "Gray", "White", "Blue"), "none", (), 180.0,
         ("Sitwell", "Posturo", "Deskcraft", "Homeline"),
         ("Desk Lamp", "Monitor"), ("long workdays", "home offices", "gaming", "small spaces"),
         model_in_title=False),
    Leaf(("Home & Kitchen", "Furniture", "Desk Lamps"), "Desk Lamp",
         ("table light", "task light"),
         ("LED", "Dimmable", "USB Charging Port", "Clamp", "Eye-Caring", "Touch Control"),
         ("Metal", "Plastic", "Wood"), ("Black", "White", "Silver", "Gold"), "none", (), 35.0,
         ("Lumina", "Brightwork", "Homeline", "Deskcraft"),
         ("Office Chair",), ("books", "studying", "crafts", "late-night work")),
    # ---------------------------------------------------------------- Clothing & Shoes
    Leaf(("Clothing & Shoes", "Women", "Dresses"), "Dress",
         ("frock", "sundress"),
         ("Wrap", "Maxi", "Midi", "Floral", "Sleeveless", "Casual"),
         ("Cotton", "Linen", "Polyester", "Silk"), APPAREL, CLOTHING, ("XS", "S", "M", "L", "XL"), 45.0,
         ("Veltro", "Mila Rose", "Northline", "Urban Thread"),
         ("Backpack",), ("summer parties", "the office", "weddings", "beach holidays"),
         model_in_title=False, audience="Women's"),
    Leaf(("Clothing & Shoes", "Men", "T-Shirts"), "T-Shirt",
         ("tee", "crewneck top"),
         ("Crew Neck", "V-Neck", "Slim Fit", "Relaxed Fit", "Graphic", "Moisture Wicking"),
         ("Cotton", "Organic Cotton", "Polyester", "Linen"), APPAREL, CLOTHING,
         ("S", "M", "L", "XL", "XXL"), 18.0,
         ("Northline", "Urban Thread", "Basix", "Trailmark"),
         ("Jeans", "Running Shoes"), ("everyday wear", "workouts", "layering", "weekends"),
         model_in_title=False, audience="Men's"),
    Leaf(("Clothing & Shoes", "Men", "Jackets"), "Jacket",
         ("windbreaker", "anorak"),
         ("Waterproof", "Insulated", "Hooded", "Packable", "Lightweight", "Fleece-Lined"),
         ("Nylon", "Polyester", "Leather", "Denim"), APPAREL, CLOTHING, ("S", "M", "L", "XL", "XXL"),
         90.0, ("Trailmark", "Summit Gear", "Northline", "Urban Thread"),
         ("T-Shirt", "Backpack"), ("rainy commutes", "hiking", "winter", "travel"),
         model_in_title=False, audience="Men's"),
    Leaf(("Clothing & Shoes", "Men", "Jeans"), "Jeans",
         ("dungarees", "five-pocket trousers"),
         ("Slim Fit", "Straight Leg", "Relaxed Fit", "Stretch", "Distressed", "Bootcut"),
         ("Denim", "Stretch Denim", "Organic Cotton"), ("Blue", "Black", "Gray", "Navy"), CLOTHING,
         ("S", "M", "L", "XL"), 55.0, ("Urban Thread", "Basix", "Northline", "Veltro"),
         ("T-Shirt", "Boots"), ("everyday wear", "the weekend", "work", "nights out"),
         model_in_title=False, audience="Men's"),
    Leaf(("Clothing & Shoes", "Shoes", "Running Shoes"), "Running Shoes",
         ("sneakers", "trainers"),
         ("Lightweight", "Cushioned", "Breathable", "Trail", "Wide Fit", "Carbon Plate"),
         ("Mesh", "Knit", "Synthetic"), ("Black", "White", "Blue", "Red", "Gray", "Pink"), SHOE,
         ("US 6", "US 7", "US 8", "US 9", "US 10", "US 11", "US 12"), 95.0,
         ("Stridex", "Pacewell", "Summit Gear", "Trailmark"),
         ("T-Shirt", "Water Bottle"), ("marathons", "daily jogs", "trail runs", "the gym")),
    Leaf(("Clothing & Shoes", "Shoes", "Boots"), "Boots",
         ("wellies", "galoshes"),
         ("Waterproof", "Insulated", "Chelsea", "Hiking", "Steel Toe", "Lace-Up"),
         ("Leather", "Suede", "Rubber", "Synthetic"), ("Black", "Brown", "Beige", "Gray"), SHOE,
         ("US 6", "US 7", "US 8", "US 9", "US 10", "US 11", "US 12"), 110.0,
         ("Stridex", "Summit Gear", "Trailmark", "Hearthmade"),
         ("Jeans", "Jacket"), ("winter", "hiking", "work sites", "rainy days"), model_in_title=False),
    # ---------------------------------------------------------------- Sports & Outdoors
    Leaf(("Sports & Outdoors", "Fitness", "Yoga Mats"), "Yoga Mat",
         ("workout pad", "exercise rug"),
         ("Non-Slip", "Extra Thick", "Eco-Friendly", "Foldable", "With Carrying Strap", "Alignment Lines"),
         ("TPE", "Natural Rubber", "PVC", "Cork"), ("Purple", "Blue", "Black", "Pink", "Green", "Gray"),
         "none", (), 30.0, ("Zenflow", "Pacewell", "Summit Gear", "Flexa"),
         ("Water Bottle",), ("hot yoga", "pilates", "home workouts", "stretching"), model_in_title=False),
    Leaf(("Sports & Outdoors", "Camping", "Tents"), "Camping Tent",
         ("outdoor shelter", "bivouac"),
         ("2-Person", "4-Person", "Waterproof", "Instant Setup", "Ultralight", "Backpacking"),
         ("Polyester", "Nylon", "Canvas"), ("Green", "Orange", "Gray", "Blue"), "none", (), 120.0,
         ("Summit Gear", "Trailmark", "Campcraft", "Wildpeak"),
         ("Backpack", "Portable Speaker"), ("family camping", "backpacking", "festivals", "the beach")),
    Leaf(("Sports & Outdoors", "Bags", "Backpacks"), "Backpack",
         ("rucksack", "knapsack"),
         ("Water Resistant", "Anti-Theft", "Laptop Compartment", "Hiking", "Rolltop", "USB Port"),
         ("Nylon", "Polyester", "Canvas", "Leather"), ("Black", "Gray", "Navy", "Green", "Red", "Beige"),
         VOLUME, ("20000 ml", "25000 ml", "30000 ml", "40000 ml"), 50.0,
         ("Trailmark", "Summit Gear", "Wildpeak", "Urban Thread"),
         ("Water Bottle", "Laptop"), ("school", "commuting", "day hikes", "travel"), model_in_title=False),
    # ---------------------------------------------------------------- Beauty
    Leaf(("Beauty", "Skincare", "Moisturizers"), "Face Moisturizer",
         ("skin cream", "hydrating lotion"),
         ("Fragrance-Free", "SPF 30", "Oil-Free", "Night", "Hyaluronic Acid", "Dermatologist Tested"),
         ("Gel", "Balm", "Whipped"), ("White",), VOLUME, ("50 ml", "75 ml", "100 ml"), 25.0,
         ("Glowlab", "Purely", "Dermacare", "Verde"),
         ("Shampoo",), ("dry patches", "oily complexions", "daily use", "night routines"), model_in_title=False),
    Leaf(("Beauty", "Hair Care", "Shampoo"), "Shampoo",
         ("hair cleanser", "hair wash"),
         ("Sulfate-Free", "Anti-Dandruff", "Volumizing", "Color Safe", "Moisturizing", "Clarifying"),
         ("Liquid", "Bar"), ("White",), VOLUME, ("250 ml", "400 ml", "500 ml", "1000 ml"), 14.0,
         ("Glowlab", "Purely", "Verde", "Dermacare"),
         ("Face Moisturizer",), ("curls", "dry scalps", "daily use", "color-treated locks"),
         model_in_title=False),
)

LEAF_BY_NAME: dict[str, Leaf] = {leaf.name: leaf for leaf in LEAVES}
LEAF_BY_NOUN: dict[str, Leaf] = {leaf.noun: leaf for leaf in LEAVES}
CATEGORY_NAMES: tuple[str, ...] = tuple(leaf.name for leaf in LEAVES)
CATEGORY_PATHS: tuple[str, ...] = tuple(leaf.path_str for leaf in LEAVES)


def siblings(leaf: Leaf) -> list[Leaf]:
    """Leaves that share the parent category (substitutes for one another)."""
    return [other for other in LEAVES if other.path[:-1] == leaf.path[:-1] and other is not leaf]


def complements(leaf: Leaf) -> list[Leaf]:
    """Leaves whose products complement this leaf's (a case for a phone, a mouse for a laptop)."""
    return [LEAF_BY_NOUN[noun] for noun in leaf.complements]
