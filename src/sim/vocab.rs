//! Product names as a real Norwegian retailer's catalog has them, deterministic from a seed:
//! thousands of distinct words (Norwegian compounds, English, a little German), drawn with a
//! Zipf law (a few words in many names, most in few), brands the same way, colours and sizes
//! for variants, names with æ, ø, å and ß, and a few Chinese, Japanese and Korean names. Search
//! is measured on these (a catalog of "Ullgenser Fjell, svart" repeated 100,000 times has 200
//! words and tells nothing about a real index).

use super::catalog::Rng;

/// The most common product words first (they head the Zipf ranks).
const COMMON: &[&str] = &[
    "Ullgenser",
    "Regnjakke",
    "Turbukse",
    "Skalljakke",
    "Dunjakke",
    "Fleecejakke",
    "Ullundertrøye",
    "Superundertøy",
    "Lue",
    "Votter",
    "Ullsokker",
    "Tursko",
    "Anorakk",
    "Vindjakke",
    "Strikkegenser",
    "Softshelljakke",
    "Lusekofte",
    "Skibukse",
    "Parkas",
    "Hettegenser",
    "T-skjorte",
    "Sekk",
    "Termos",
    "Kaffe",
];

/// First halves of Norwegian compounds.
const HEADS: &[&str] = &[
    "ull",
    "regn",
    "tur",
    "ski",
    "fjell",
    "vinter",
    "sommer",
    "barne",
    "dame",
    "herre",
    "bomulls",
    "lin",
    "skinn",
    "dun",
    "kaffe",
    "te",
    "kjøkken",
    "bade",
    "hage",
    "sykkel",
    "løpe",
    "sove",
    "strikke",
    "bål",
    "grill",
    "fiske",
    "jakt",
    "vann",
    "snø",
    "hånd",
    "fot",
    "hode",
    "tann",
    "hår",
    "lys",
    "glass",
    "tre",
    "stål",
    "støpejerns",
    "brød",
    "smør",
    "ost",
    "melke",
    "kake",
    "sjokolade",
    "blåbær",
    "jordbær",
    "eple",
    "pære",
    "bjørk",
    "furu",
    "eike",
    "sølv",
    "gull",
    "reise",
    "fritids",
    "arbeids",
    "hverdags",
    "kontor",
    "skole",
    "leke",
    "jule",
    "påske",
    "fest",
    "natt",
    "morgen",
    "kvelds",
    "sjø",
    "båt",
    "hytte",
    "telt",
    "ærfugl",
];

/// Second halves of Norwegian compounds.
const TAILS: &[&str] = &[
    "jakke",
    "bukse",
    "genser",
    "sokker",
    "lue",
    "votter",
    "sko",
    "støvler",
    "sekk",
    "telt",
    "pose",
    "kopp",
    "kanne",
    "kjele",
    "panne",
    "kniv",
    "skje",
    "gaffel",
    "lampe",
    "matte",
    "pute",
    "dyne",
    "teppe",
    "håndkle",
    "børste",
    "kam",
    "saks",
    "flaske",
    "boks",
    "pakke",
    "krem",
    "såpe",
    "olje",
    "sjampo",
    "pumpe",
    "lås",
    "hjelm",
    "briller",
    "klokke",
    "veske",
    "belte",
    "skjerf",
    "hansker",
    "skjorte",
    "kjole",
    "skjørt",
    "truse",
    "bh",
    "strømper",
    "tøfler",
    "sandaler",
    "stol",
    "bord",
    "hylle",
    "kurv",
    "brett",
    "form",
    "rist",
    "ovn",
    "termos",
    "stav",
    "ski",
    "bindinger",
    "smøring",
];

/// English product words (imported brands and ranges keep their English names).
const ENGLISH: &[&str] = &[
    "Classic",
    "Premium",
    "Organic",
    "Light",
    "Pro",
    "Sport",
    "Outdoor",
    "Wool",
    "Cotton",
    "Merino",
    "Jacket",
    "Pants",
    "Sweater",
    "Hoodie",
    "Shirt",
    "Socks",
    "Beanie",
    "Gloves",
    "Boots",
    "Sneakers",
    "Backpack",
    "Bottle",
    "Mug",
    "Blanket",
    "Pillow",
    "Towel",
    "Lamp",
    "Candle",
    "Soap",
    "Shampoo",
    "Conditioner",
    "Lotion",
    "Coffee",
    "Tea",
    "Chocolate",
    "Cookies",
    "Crackers",
    "Granola",
    "Honey",
    "Jam",
    "Sauce",
    "Pasta",
    "Rice",
    "Noodles",
    "Soup",
    "Juice",
    "Water",
    "Charger",
    "Cable",
    "Headphones",
    "Speaker",
    "Keyboard",
    "Mouse",
    "Adapter",
    "Battery",
    "Flashlight",
    "Knife",
    "Pan",
    "Pot",
    "Kettle",
    "Grinder",
    "Scale",
    "Timer",
    "Brush",
    "Comb",
    "Mirror",
    "Wallet",
    "Belt",
    "Scarf",
    "Cap",
    "Shorts",
    "Leggings",
    "Vest",
    "Parka",
    "Raincoat",
    "Trail",
    "Running",
    "Hiking",
    "Winter",
    "Summer",
    "Kids",
    "Women",
    "Men",
    "Compact",
    "Travel",
    "Ultra",
    "Thermo",
    "Soft",
    "Warm",
    "Dry",
    "Active",
    "Everyday",
    "Deluxe",
    "Original",
    "Extra",
];

/// German words (imported goods), some with ß.
const GERMAN: &[&str] = &[
    "Straßenschuh",
    "Weißbier",
    "Großpackung",
    "Fußwärmer",
    "Süßholz",
    "Maßband",
    "Schokolade",
    "Wanderstiefel",
    "Gießkanne",
    "Außenleuchte",
    "Brotzeit",
    "Grüße",
];

/// Whole names in Chinese, Japanese or Korean (a specialist shelf; one name in a few hundred).
const CJK: &[&str] = &[
    "抹茶ラテ",
    "ほうじ茶ティーバッグ",
    "緑茶",
    "烏龍茶",
    "醤油",
    "味噌汁",
    "焼きそば",
    "寿司用海苔",
    "紹興酒",
    "餃子の皮",
    "豆腐",
    "김치",
    "신라면",
    "고추장",
    "볶음밥",
    "乌龙茶叶",
];

/// Syllables for model and range names (Fjelltind, Kvaløy, Rondane …).
const ONSETS: &[&str] = &[
    "b", "d", "f", "fj", "g", "h", "k", "kv", "l", "m", "n", "r", "s", "sk", "st", "t", "tr", "v",
    "br", "gr",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "y", "å", "ø", "æ"];
const CODAS: &[&str] = &[
    "", "n", "nd", "r", "rd", "s", "t", "k", "l", "ll", "m", "ng", "st", "v",
];

const NORWEGIAN_BRANDS: &[&str] = &[
    "Bergans",
    "Devold",
    "Dale of Norway",
    "Helly Hansen",
    "Norrøna",
    "Swix",
    "Kari Traa",
    "Ulvang",
    "Janus",
    "Amundsen Sports",
    "Stormberg",
    "Skogstad",
    "Aclima",
    "Alfa",
    "Viking",
];
const BRAND_SUFFIXES: &[&str] = &[
    "", "", " AS", " Nordic", " Sport", " Design", " & Co", " Basics",
];
const GERMAN_BRANDS: &[&str] = &["Weißenfels", "Großmann", "Kößler", "Brüder Strauß"];

pub(crate) const COLOURS: &[&str] = &[
    "svart",
    "hvit",
    "grå",
    "mørkegrå",
    "lysegrå",
    "marineblå",
    "blå",
    "lyseblå",
    "rød",
    "vinrød",
    "grønn",
    "mørkegrønn",
    "oliven",
    "gul",
    "sennep",
    "oransje",
    "rosa",
    "lilla",
    "brun",
    "beige",
    "sand",
    "sølv",
    "gull",
    "navy",
    "black",
    "white",
    "charcoal",
    "khaki",
    "burgundy",
    "off-white",
];
pub(crate) const CLOTHING_SIZES: &[&str] = &["XS", "S", "M", "L", "XL", "XXL", "3XL", "4XL"];
const GOODS_SIZES: &[&str] = &[
    "250 ml",
    "500 ml",
    "1 l",
    "1,5 l",
    "100 g",
    "200 g",
    "500 g",
    "1 kg",
    "2-pk",
    "6-pk",
    "140x200 cm",
    "50x70 cm",
];

/// Zipf-distributed picks from a list: rank r is drawn with weight 1/(r+1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / ((r + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len().saturating_sub(1))
    }
}

fn capitalise(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Shuffles in place (Fisher-Yates).
fn shuffle<T>(rng: &mut Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = rng.below((i + 1) as u64) as usize;
        xs.swap(i, j);
    }
}

/// What a generated product is called.
pub(crate) struct Naming {
    pub name: String,
    pub brand: String,
    /// A garment (sizes XS…4XL) or goods (volumes, weights, packs).
    pub clothing: bool,
    /// Its first colour; variants may add others.
    pub colour: &'static str,
    /// The word used as `productType`.
    pub kind: String,
}

/// The vocabulary of one catalog load.
pub(crate) struct Vocabulary {
    words: Vec<String>,
    word_zipf: Zipf,
    models: Vec<String>,
    model_zipf: Zipf,
    brands: Vec<String>,
    brand_zipf: Zipf,
    colour_zipf: Zipf,
}

impl Vocabulary {
    pub fn new(rng: &mut Rng) -> Vocabulary {
        // Product words: the common ones first, then every compound, English and German word
        // in a seeded order (so each seed has its own frequent words).
        let mut rest: Vec<String> = Vec::new();
        for h in HEADS {
            for t in TAILS {
                // "skiski", "teltelt" and the like are not words.
                if !t.starts_with(h) && !h.ends_with(t) {
                    rest.push(capitalise(&format!("{h}{t}")));
                }
            }
        }
        rest.extend(ENGLISH.iter().map(|w| w.to_string()));
        rest.extend(GERMAN.iter().map(|w| w.to_string()));
        shuffle(rng, &mut rest);
        let mut words: Vec<String> = COMMON.iter().map(|w| w.to_string()).collect();
        let mut seen: std::collections::HashSet<String> = words.iter().cloned().collect();
        words.extend(rest.into_iter().filter(|w| seen.insert(w.clone())));

        // Model names: one or two syllables, some three, with the Nordic vowels.
        let mut models = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while models.len() < 3000 {
            let n = 1 + rng.below(3) as usize;
            let mut m = String::new();
            for _ in 0..n {
                m.push_str(ONSETS[rng.below(ONSETS.len() as u64) as usize]);
                m.push_str(VOWELS[rng.below(VOWELS.len() as u64) as usize]);
                m.push_str(CODAS[rng.below(CODAS.len() as u64) as usize]);
            }
            let m = capitalise(&m);
            if m.chars().count() >= 3 && seen.insert(m.clone()) {
                models.push(m);
            }
        }

        // Brands: the Norwegian ones lead, then invented ones and a few German.
        let mut brands: Vec<String> = NORWEGIAN_BRANDS.iter().map(|b| b.to_string()).collect();
        let mut invented: Vec<String> = GERMAN_BRANDS.iter().map(|b| b.to_string()).collect();
        for m in models.iter().take(400) {
            let suffix = BRAND_SUFFIXES[rng.below(BRAND_SUFFIXES.len() as u64) as usize];
            invented.push(format!("{m}{suffix}"));
        }
        shuffle(rng, &mut invented);
        brands.extend(invented);
        shuffle(rng, &mut models);

        Vocabulary {
            word_zipf: Zipf::new(words.len(), 1.0),
            words,
            model_zipf: Zipf::new(models.len(), 0.9),
            models,
            brand_zipf: Zipf::new(brands.len(), 1.1),
            brands,
            colour_zipf: Zipf::new(COLOURS.len(), 0.8),
        }
    }

    /// How many distinct words names are drawn from.
    #[cfg(test)]
    pub fn distinct_words(&self) -> usize {
        self.words.len() + self.models.len()
    }

    pub fn colour(&self, rng: &mut Rng) -> &'static str {
        COLOURS[self.colour_zipf.draw(rng)]
    }

    /// A product's name, brand and kind.
    pub fn naming(&self, rng: &mut Rng) -> Naming {
        let brand = self.brands[self.brand_zipf.draw(rng)].clone();
        let colour = self.colour(rng);
        if rng.below(400) == 0 {
            let name = CJK[rng.below(CJK.len() as u64) as usize];
            return Naming {
                name: name.to_string(),
                brand,
                clothing: false,
                colour,
                kind: name.to_string(),
            };
        }
        let word = self.words[self.word_zipf.draw(rng)].clone();
        let model = &self.models[self.model_zipf.draw(rng)];
        let clothing = COMMON[..20].contains(&word.as_str())
            || [
                "jakke", "bukse", "genser", "sokker", "skjorte", "kjole", "lue", "votter",
            ]
            .iter()
            .any(|t| word.to_lowercase().ends_with(t));
        let name = match rng.below(10) {
            // "Ullgenser Fjelltind, svart"
            0..=4 => format!("{word} {model}, {colour}"),
            // "Fjelltind Ullgenser"
            5..=6 => format!("{model} {word}"),
            // "Ullgenser Fjelltind Lett" (two product words)
            7..=8 => {
                let second = &self.words[self.word_zipf.draw(rng)];
                format!("{word} {model} {second}")
            }
            // "Ullgenser"
            _ => word.clone(),
        };
        Naming {
            name,
            brand,
            clothing,
            colour,
            kind: word,
        }
    }

    /// `n` variant labels for a product: sizes for clothing (in one or two colours), package
    /// sizes for goods.
    pub fn variant_labels(
        &self,
        rng: &mut Rng,
        naming: &Naming,
        n: usize,
    ) -> Vec<(String, &'static str)> {
        if n == 0 {
            return Vec::new();
        }
        if naming.clothing {
            let colours = if n >= 4 && rng.chance(40) {
                vec![naming.colour, self.colour(rng)]
            } else {
                vec![naming.colour]
            };
            let per = n.div_ceil(colours.len());
            let sizes: Vec<String> = if per <= CLOTHING_SIZES.len() {
                let start = rng.below((CLOTHING_SIZES.len() - per + 1) as u64) as usize;
                CLOTHING_SIZES[start..start + per]
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                (0..per).map(|k| (34 + 2 * k).to_string()).collect()
            };
            let mut out = Vec::with_capacity(n);
            'outer: for c in &colours {
                for s in &sizes {
                    if out.len() == n {
                        break 'outer;
                    }
                    out.push((s.clone(), *c));
                }
            }
            out
        } else {
            let start = rng.below(GOODS_SIZES.len() as u64) as usize;
            (0..n)
                .map(|k| {
                    let s = GOODS_SIZES[(start + k) % GOODS_SIZES.len()];
                    if k < GOODS_SIZES.len() {
                        (s.to_string(), naming.colour)
                    } else {
                        (format!("{s} {}", k / GOODS_SIZES.len() + 1), naming.colour)
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn names_are_varied_zipf_distributed_and_deterministic() {
        let names = |seed| {
            let mut rng = Rng::new(seed);
            let v = Vocabulary::new(&mut rng);
            assert!(v.distinct_words() > 5000, "{}", v.distinct_words());
            (0..20_000).map(|_| v.naming(&mut rng)).collect::<Vec<_>>()
        };
        let a = names(7);
        let b = names(7);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.name == y.name && x.brand == y.brand));
        let mut freq: HashMap<String, usize> = HashMap::new();
        for n in &a {
            for w in n
                .name
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                *freq.entry(w.to_lowercase()).or_default() += 1;
            }
        }
        assert!(freq.len() > 3000, "{} distinct words", freq.len());
        let mut counts: Vec<usize> = freq.values().copied().collect();
        counts.sort_unstable_by(|x, y| y.cmp(x));
        // Zipf: the most frequent word is far more common than the hundredth.
        assert!(
            counts[0] > 10 * counts[99],
            "{} vs {}",
            counts[0],
            counts[99]
        );
        let has = |f: &dyn Fn(&str) -> bool| a.iter().any(|n| f(&n.name) || f(&n.brand));
        assert!(has(&|s| s.contains(['æ', 'ø', 'å'])));
        assert!(has(&|s| s.contains('ß')));
        assert!(has(&|s| s
            .chars()
            .any(|c| ('\u{3040}'..='\u{9FFF}').contains(&c)
                || ('\u{AC00}'..='\u{D7AF}').contains(&c))));
        let brands: std::collections::HashSet<&str> = a.iter().map(|n| n.brand.as_str()).collect();
        assert!(brands.len() > 200, "{}", brands.len());
    }
}
