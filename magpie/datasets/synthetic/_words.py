"""Word banks for the synthetic catalog: the category tree, brands and style words.

Every leaf category carries the nouns, variants and features its titles are
built from and the median price of its products. Styles are the latent
attributes that titles and descriptions spell out in words.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEPARTMENTS", "STYLES", "Department", "Leaf", "Style", "Subcategory"]


@dataclass(frozen=True, slots=True)
class Leaf:
    """A leaf category: what its products are called and what they cost."""

    name: str
    nouns: tuple[str, ...]
    variants: tuple[str, ...]
    features: tuple[str, ...]
    """Materials or technical features, one per product."""
    median_price: float


@dataclass(frozen=True, slots=True)
class Subcategory:
    name: str
    leaves: tuple[Leaf, ...]


@dataclass(frozen=True, slots=True)
class Department:
    name: str
    segment: str
    """The user segment of people whose taste centres on this department."""
    brands: tuple[str, ...]
    benefits: tuple[str, ...]
    """Sentences a description may end with."""
    subcategories: tuple[Subcategory, ...]


@dataclass(frozen=True, slots=True)
class Style:
    """A latent style attribute and the words that give it away."""

    name: str
    adjectives: tuple[str, ...]
    phrase: str
    """A noun phrase for descriptions: "The Nordvik Wok offers {phrase}."."""
    price_shift: float
    """Added to the log price of products in this style."""


STYLES: tuple[Style, ...] = (
    Style(
        "premium",
        ("Premium", "Luxe", "Signature"),
        "premium materials and a refined finish",
        0.35,
    ),
    Style(
        "value",
        ("Essential", "Everyday", "Value"),
        "dependable everyday quality at a great price",
        -0.35,
    ),
    Style(
        "eco",
        ("Organic", "Recycled", "Eco"),
        "sustainable, responsibly sourced materials",
        0.1,
    ),
    Style(
        "outdoor",
        ("Rugged", "Outdoor", "Trail"),
        "a rugged build for outdoor adventures and rough weather",
        0.05,
    ),
    Style(
        "minimal",
        ("Minimalist", "Nordic", "Clean-Line"),
        "a clean, minimalist design that suits any setting",
        0.05,
    ),
    Style(
        "playful",
        ("Bright", "Playful", "Colourful"),
        "bold, vibrant colours and a fun, playful look",
        -0.1,
    ),
    Style(
        "compact",
        ("Compact", "Travel", "Mini"),
        "a compact, lightweight build that is easy to take anywhere",
        -0.05,
    ),
    Style(
        "pro",
        ("Pro", "Advanced", "Performance"),
        "professional-grade performance for demanding users",
        0.3,
    ),
    Style(
        "vintage",
        ("Vintage", "Retro", "Heritage"),
        "a timeless look inspired by vintage design",
        0.1,
    ),
)


def _leaf(name: str, nouns: str, variants: str, features: str, median_price: float) -> Leaf:
    """A leaf from ``|``-separated word lists (keeps the tables below compact)."""
    return Leaf(
        name,
        tuple(nouns.split("|")),
        tuple(variants.split("|")),
        tuple(features.split("|")),
        median_price,
    )


DEPARTMENTS: tuple[Department, ...] = (
    Department(
        "Electronics",
        "tech_enthusiast",
        (
            "Voltari",
            "Ampereo",
            "Lumetric",
            "Kinetiq",
            "Zenwave",
            "Soniq",
            "Pixelon",
            "Arcwise",
            "Nexora",
            "Quantix",
            "Helix Audio",
            "Brightcore",
        ),
        (
            "Comes with a two-year warranty.",
            "Firmware updates are included.",
            "Works with all major platforms.",
        ),
        (
            Subcategory(
                "Audio",
                (
                    _leaf(
                        "Headphones",
                        "Over-Ear Headphones|Wireless Earbuds|Noise-Cancelling Headphones",
                        "Black|White|Midnight Blue",
                        "Bluetooth 5.3|Active Noise Cancelling|Hi-Res Audio",
                        90,
                    ),
                    _leaf(
                        "Speakers",
                        "Bluetooth Speaker|Soundbar|Smart Speaker",
                        "20 W|40 W|2.1 Channel",
                        "Waterproof|Bass Boost|Stereo Pairing",
                        70,
                    ),
                ),
            ),
            Subcategory(
                "Computers",
                (
                    _leaf(
                        "Laptops",
                        "Laptop|Ultrabook|Convertible Laptop",
                        '13"|14"|15.6"',
                        "Core i5|Ryzen 7|16 GB RAM",
                        850,
                    ),
                    _leaf(
                        "Keyboards & Mice",
                        "Mechanical Keyboard|Wireless Mouse|Ergonomic Keyboard",
                        "US Layout|DE Layout|Full Size",
                        "RGB Backlit|Low-Profile|Silent Switch",
                        55,
                    ),
                    _leaf(
                        "Monitors",
                        "Monitor|Curved Monitor|Portable Monitor",
                        '24"|27"|32"',
                        "IPS|4K UHD|144 Hz",
                        260,
                    ),
                ),
            ),
            Subcategory(
                "Phones & Accessories",
                (
                    _leaf(
                        "Smartphones",
                        "Smartphone|Foldable Phone|Rugged Phone",
                        "128 GB|256 GB|512 GB",
                        "Dual SIM|5G|OLED",
                        450,
                    ),
                    _leaf(
                        "Phone Cases",
                        "Phone Case|Screen Protector|Card Wallet",
                        "for iPhone 15|for Galaxy S24|for Pixel 8",
                        "Silicone|Leather|Tempered Glass",
                        18,
                    ),
                    _leaf(
                        "Chargers",
                        "USB-C Charger|Power Bank|Wireless Charger",
                        "20 W|65 W|10000 mAh",
                        "GaN|Fast Charging|Dual Port",
                        30,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Home",
        "home_maker",
        (
            "Nordvik",
            "Hearthly",
            "Maison Vale",
            "Oakhollow",
            "Lindqvist",
            "Casa Serra",
            "Ember & Ash",
            "Stillroom",
            "Kobe Forge",
            "Haventree",
            "Willowmere",
            "Tessel",
        ),
        (
            "Easy to clean and built to last.",
            "Designed for everyday use at home.",
            "Makes a thoughtful housewarming gift.",
        ),
        (
            Subcategory(
                "Kitchen",
                (
                    _leaf(
                        "Knives",
                        "Chef's Knife|Santoku Knife|Paring Knife|Bread Knife",
                        "20 cm|15 cm|Set of 3",
                        "Carbon Steel|Damascus Steel|Stainless Steel",
                        45,
                    ),
                    _leaf(
                        "Cookware",
                        "Frying Pan|Saucepan|Dutch Oven|Wok",
                        "24 cm|28 cm|5 L",
                        "Cast Iron|Non-Stick|Tri-Ply Steel",
                        60,
                    ),
                    _leaf(
                        "Coffee & Tea",
                        "Espresso Maker|French Press|Teapot|Pour-Over Kettle",
                        "1 L|6 Cup|350 ml",
                        "Borosilicate Glass|Ceramic|Brushed Steel",
                        40,
                    ),
                ),
            ),
            Subcategory(
                "Furniture",
                (
                    _leaf(
                        "Chairs",
                        "Office Chair|Dining Chair|Lounge Chair",
                        "Set of 2|Grey|Oak",
                        "Solid Wood|Mesh|Velvet",
                        180,
                    ),
                    _leaf(
                        "Shelving",
                        "Bookcase|Wall Shelf|Storage Unit",
                        "3 Tier|5 Tier|80 cm",
                        "Pine|Powder-Coated Metal|Walnut Veneer",
                        120,
                    ),
                ),
            ),
            Subcategory(
                "Decor",
                (
                    _leaf(
                        "Lighting",
                        "Table Lamp|Floor Lamp|Pendant Light",
                        "E27|Dimmable|LED",
                        "Brass|Linen Shade|Rattan",
                        70,
                    ),
                    _leaf(
                        "Bedding",
                        "Duvet Cover|Pillow|Throw Blanket",
                        "Single|Double|King",
                        "Cotton Percale|Linen|Wool",
                        50,
                    ),
                    _leaf(
                        "Candles",
                        "Scented Candle|Reed Diffuser|Candle Holder",
                        "200 g|Set of 3|100 ml",
                        "Soy Wax|Beeswax|Smoked Glass",
                        20,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Fashion",
        "fashion_lover",
        (
            "Aurelle",
            "Marlowe",
            "Fenwick & Rye",
            "Solenne",
            "Veyra",
            "Atelier Nove",
            "Corvin",
            "Linnea",
            "Brixton Row",
            "Saffi",
            "Ondine",
            "Hallstrom",
        ),
        ("Free returns within 30 days.", "True to size.", "Machine washable at 30 °C."),
        (
            Subcategory(
                "Women",
                (
                    _leaf(
                        "Dresses",
                        "Midi Dress|Wrap Dress|Maxi Dress",
                        "Size S|Size M|Size L",
                        "Cotton|Silk|Viscose",
                        60,
                    ),
                    _leaf(
                        "Handbags",
                        "Tote Bag|Crossbody Bag|Clutch",
                        "Black|Tan|Burgundy",
                        "Full-Grain Leather|Canvas|Vegan Leather",
                        80,
                    ),
                ),
            ),
            Subcategory(
                "Men",
                (
                    _leaf(
                        "Shirts",
                        "Oxford Shirt|Polo Shirt|Flannel Shirt",
                        "Size M|Size L|Size XL",
                        "Cotton Twill|Linen|Merino",
                        45,
                    ),
                    _leaf(
                        "Jackets",
                        "Bomber Jacket|Rain Jacket|Denim Jacket",
                        "Size M|Size L|Size XL",
                        "Nylon|Selvedge Denim|Waxed Cotton",
                        110,
                    ),
                ),
            ),
            Subcategory(
                "Shoes",
                (
                    _leaf(
                        "Sneakers",
                        "Running Sneaker|Court Sneaker|High-Top Sneaker",
                        "EU 40|EU 42|EU 44",
                        "Knit Mesh|Suede|Leather",
                        85,
                    ),
                    _leaf(
                        "Boots",
                        "Chelsea Boot|Hiking Boot|Ankle Boot",
                        "EU 39|EU 41|EU 43",
                        "Oiled Leather|Suede|Gore-Tex",
                        120,
                    ),
                ),
            ),
            Subcategory(
                "Accessories",
                (
                    _leaf(
                        "Watches",
                        "Analog Watch|Chronograph|Dive Watch",
                        "38 mm|40 mm|42 mm",
                        "Stainless Steel|Titanium|Leather Strap",
                        150,
                    ),
                    _leaf(
                        "Sunglasses",
                        "Aviator Sunglasses|Round Sunglasses|Sport Sunglasses",
                        "Black|Tortoise|Gold",
                        "Polarised|UV400|Acetate",
                        60,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Sports",
        "sports_enthusiast",
        (
            "Summitline",
            "Ridgeback",
            "Kestrel",
            "Alpenglow",
            "Stridewell",
            "Trailhead",
            "Fjellstad",
            "Velocita",
            "Peakform",
            "Tidewater",
            "Ironpine",
            "Northslope",
        ),
        (
            "Tested by athletes.",
            "Backed by a lifetime repair service.",
            "Ready for training from day one.",
        ),
        (
            Subcategory(
                "Fitness",
                (
                    _leaf(
                        "Yoga",
                        "Yoga Mat|Yoga Block|Yoga Strap",
                        "4 mm|6 mm|Set of 2",
                        "Cork|TPE|Natural Rubber",
                        30,
                    ),
                    _leaf(
                        "Weights",
                        "Dumbbell Set|Kettlebell|Resistance Bands",
                        "8 kg|12 kg|20 kg",
                        "Cast Iron|Neoprene|Latex",
                        50,
                    ),
                ),
            ),
            Subcategory(
                "Outdoor",
                (
                    _leaf(
                        "Camping",
                        "Tent|Sleeping Bag|Camping Stove",
                        "2 Person|4 Person|-5 °C",
                        "Ripstop Nylon|Down|Aluminium",
                        110,
                    ),
                    _leaf(
                        "Hiking",
                        "Backpack|Trekking Poles|Insulated Bottle",
                        "30 L|45 L|750 ml",
                        "Cordura|Carbon Fibre|Vacuum Steel",
                        60,
                    ),
                ),
            ),
            Subcategory(
                "Cycling",
                (
                    _leaf(
                        "Bikes",
                        "Road Bike|Gravel Bike|City Bike",
                        "Size M|Size L|54 cm",
                        "Aluminium Frame|Carbon Frame|Steel Frame",
                        900,
                    ),
                    _leaf(
                        "Cycling Gear",
                        "Bike Helmet|Bike Light|Cycling Gloves",
                        "Size M|Size L|400 lm",
                        "MIPS|USB Rechargeable|Gel Padded",
                        45,
                    ),
                ),
            ),
            Subcategory(
                "Team Sports",
                (
                    _leaf(
                        "Football",
                        "Football|Goalkeeper Gloves|Shin Guards",
                        "Size 5|Size 4|Size 8",
                        "Synthetic Leather|Latex Palm|Foam",
                        30,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Beauty",
        "beauty_lover",
        (
            "Lumiere",
            "Botanika",
            "Dewdrop",
            "Verdure",
            "Aveline",
            "Claro",
            "Seraphine",
            "Mosswood",
            "Purelle",
            "Radia",
            "Nuvola",
            "Elmira",
        ),
        ("Dermatologically tested.", "Not tested on animals.", "Suitable for all skin types."),
        (
            Subcategory(
                "Skincare",
                (
                    _leaf(
                        "Moisturisers",
                        "Face Cream|Night Cream|Moisturiser",
                        "50 ml|30 ml|100 ml",
                        "Hyaluronic Acid|Shea Butter|Ceramide",
                        25,
                    ),
                    _leaf(
                        "Serums",
                        "Face Serum|Eye Serum|Overnight Serum",
                        "30 ml|15 ml|50 ml",
                        "Vitamin C|Retinol|Niacinamide",
                        30,
                    ),
                    _leaf(
                        "Sun Care",
                        "Sunscreen SPF 50|After-Sun Lotion|Tinted SPF",
                        "50 ml|100 ml|200 ml",
                        "Mineral|Water Resistant|Fragrance-Free",
                        18,
                    ),
                ),
            ),
            Subcategory(
                "Hair",
                (
                    _leaf(
                        "Shampoo & Care",
                        "Shampoo|Conditioner|Hair Mask",
                        "250 ml|500 ml|1 L",
                        "Argan Oil|Keratin|Tea Tree",
                        12,
                    ),
                    _leaf(
                        "Styling Tools",
                        "Hair Dryer|Straightener|Curling Wand",
                        "2000 W|25 mm|32 mm",
                        "Ionic|Ceramic Plates|Tourmaline",
                        60,
                    ),
                ),
            ),
            Subcategory(
                "Fragrance",
                (
                    _leaf(
                        "Perfume",
                        "Eau de Parfum|Eau de Toilette|Body Mist",
                        "30 ml|50 ml|100 ml",
                        "Floral|Woody|Citrus",
                        65,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Books",
        "bookworm",
        (
            "Quillhouse",
            "Inkwell Press",
            "Foxglove Books",
            "Meridian",
            "Lanternfly",
            "Harbour Lane",
            "Bramble & Pike",
            "Northlight",
            "Paperkite",
            "Oriel",
            "Tallow Press",
            "Greyfriars",
        ),
        (
            "A bestseller in its genre.",
            "Includes an exclusive author interview.",
            "Printed on FSC-certified paper.",
        ),
        (
            Subcategory(
                "Fiction",
                (
                    _leaf(
                        "Crime",
                        "Crime Novel|Detective Novel|Thriller",
                        "Paperback|Hardcover|eBook",
                        "Nordic Noir|Cosy Mystery|Psychological",
                        14,
                    ),
                    _leaf(
                        "Fantasy",
                        "Fantasy Novel|Epic Saga|Graphic Novel",
                        "Paperback|Hardcover|eBook",
                        "High Fantasy|Urban Fantasy|Sword and Sorcery",
                        16,
                    ),
                    _leaf(
                        "Romance",
                        "Romance Novel|Love Story|Romantic Comedy",
                        "Paperback|Hardcover|eBook",
                        "Historical|Contemporary|Small-Town",
                        12,
                    ),
                ),
            ),
            Subcategory(
                "Non-Fiction",
                (
                    _leaf(
                        "Cookbooks",
                        "Cookbook|Baking Book|Recipe Collection",
                        "Hardcover|Paperback|Spiral Bound",
                        "Vegetarian|Italian|Sourdough",
                        25,
                    ),
                    _leaf(
                        "Business",
                        "Business Book|Leadership Guide|Productivity Handbook",
                        "Hardcover|Paperback|Audiobook",
                        "Management|Startups|Investing",
                        20,
                    ),
                    _leaf(
                        "Travel Guides",
                        "Travel Guide|City Guide|Road Atlas",
                        "2024 Edition|2025 Edition|Pocket Edition",
                        "Japan|Scandinavia|Italy",
                        18,
                    ),
                ),
            ),
            Subcategory(
                "Children's",
                (
                    _leaf(
                        "Picture Books",
                        "Picture Book|Board Book|Bedtime Stories",
                        "Hardcover|Paperback|Board",
                        "Animals|Dinosaurs|Space",
                        10,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Toys",
        "parent",
        (
            "Tumblewick",
            "Brickly",
            "Wonderloom",
            "Pippin & Co",
            "Moonbeam",
            "Jolly Otter",
            "Kiddo Lab",
            "Toybox Garden",
            "Sprocket",
            "Marbleby",
            "Huggle",
            "Zippy",
        ),
        ("Safety tested to EN 71.", "Recommended for ages 3 and up.", "Batteries not required."),
        (
            Subcategory(
                "Building",
                (
                    _leaf(
                        "Building Sets",
                        "Building Set|Construction Kit|Marble Run",
                        "250 Pieces|500 Pieces|1000 Pieces",
                        "Plastic Bricks|Wooden Blocks|Magnetic Tiles",
                        40,
                    ),
                ),
            ),
            Subcategory(
                "Games",
                (
                    _leaf(
                        "Board Games",
                        "Board Game|Card Game|Strategy Game",
                        "2-4 Players|2-6 Players|Family Edition",
                        "Cooperative|Party|Deck-Building",
                        30,
                    ),
                    _leaf(
                        "Puzzles",
                        "Jigsaw Puzzle|3D Puzzle|Brain Teaser",
                        "500 Pieces|1000 Pieces|1500 Pieces",
                        "Landscape|Fine Art|World Map",
                        18,
                    ),
                ),
            ),
            Subcategory(
                "Play",
                (
                    _leaf(
                        "Ride-Ons",
                        "Balance Bike|Kick Scooter|Ride-On Car",
                        "Ages 2-4|Ages 3-6|Ages 5-8",
                        "Birch Plywood|Aluminium|Moulded Plastic",
                        70,
                    ),
                    _leaf(
                        "Soft Toys",
                        "Teddy Bear|Plush Unicorn|Plush Dinosaur",
                        "25 cm|40 cm|60 cm",
                        "Organic Cotton|Plush|Faux Fur",
                        20,
                    ),
                ),
            ),
        ),
    ),
    Department(
        "Grocery",
        "foodie",
        (
            "Olivara",
            "Harvest Moon",
            "Bellacorte",
            "Mill & Stone",
            "Cacao Verde",
            "Greenfield",
            "Tea Atelier",
            "Nonna's",
            "Saltmarsh",
            "Goldcrest",
            "Alpwiese",
            "Roastery 21",
        ),
        ("Best enjoyed within six months.", "Store in a cool, dry place.", "Produced in the EU."),
        (
            Subcategory(
                "Pantry",
                (
                    _leaf(
                        "Pasta & Grains",
                        "Spaghetti|Basmati Rice|Quinoa",
                        "500 g|1 kg|Pack of 4",
                        "Whole Wheat|Durum|Gluten-Free",
                        4,
                    ),
                    _leaf(
                        "Oils & Sauces",
                        "Olive Oil|Pesto|Hot Sauce",
                        "250 ml|500 ml|750 ml",
                        "Extra Virgin|Cold-Pressed|Smoked",
                        8,
                    ),
                ),
            ),
            Subcategory(
                "Beverages",
                (
                    _leaf(
                        "Coffee",
                        "Coffee Beans|Ground Coffee|Coffee Capsules",
                        "250 g|1 kg|Pack of 50",
                        "Arabica|Single Origin|Dark Roast",
                        12,
                    ),
                    _leaf(
                        "Tea",
                        "Green Tea|Black Tea|Herbal Tea",
                        "20 Bags|100 g|50 Bags",
                        "Loose Leaf|Matcha|Chamomile",
                        6,
                    ),
                ),
            ),
            Subcategory(
                "Snacks",
                (
                    _leaf(
                        "Chocolate",
                        "Dark Chocolate|Milk Chocolate|Pralines",
                        "100 g|200 g|Gift Box",
                        "70% Cocoa|Hazelnut|Sea Salt",
                        5,
                    ),
                    _leaf(
                        "Nuts & Bars",
                        "Mixed Nuts|Protein Bar|Granola",
                        "200 g|500 g|Pack of 12",
                        "Roasted|Lightly Salted|Honey",
                        6,
                    ),
                ),
            ),
        ),
    ),
)
