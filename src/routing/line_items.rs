//! A page of Checkout Session line items, read straight into
//! [`LineItem`]s: one pass over an answer of
//! `GET /v1/checkout/sessions/{id}/line_items?expand[]=data.price.product`
//! that builds no `serde_json::Value`. Pure, no I/O.
//!
//! What it reads and what it refuses are exactly what a page parsed with a
//! [`crate::pruned::Keep`] of the fields a record reads gives, so the two
//! cannot be told apart from outside:
//! - a field it reads goes through serde_json as a kept value does
//!   (numbers range-checked, strings checked as UTF-8, arrays and objects
//!   within serde_json's nesting bound of 128, counted from the page);
//!   every other field is skipped as serde_json skips a value
//!   ([`IgnoredAny`]: syntax checked, not built, not counted for depth);
//! - a field of an unexpected type reads as missing (`"quantity": "3"`,
//!   `"price": "price_123"`), and an integer that does not fit `i64` too;
//! - a key written twice keeps its last value, the whole value: a second
//!   `price` replaces every field of the first.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::routing::record::LineItem;

/// What a page says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// `data`, when it is a list.
    pub data: Option<Data>,
    /// Whether `has_more` is the JSON `true`.
    pub has_more: bool,
}

/// A page's `data` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    /// The first items, as many as [`read_page`] was asked to keep.
    pub items: Vec<LineItem>,
    /// How many items the list holds, kept or not.
    pub len: usize,
    /// The last item's `id` when it is a string: the cursor
    /// (`starting_after`) for the next page.
    pub last_id: Option<String>,
}

/// Reads a page (the whole of `body`, with serde_json's syntax rules),
/// keeping at most `keep` items: those past it are read, checked and
/// counted in [`Data::len`] but not held, so an answer with more items than
/// the router takes costs no memory for them.
pub fn read_page(body: &[u8], keep: usize) -> serde_json::Result<Page> {
    // A body that is UTF-8 throughout (every page Stripe sends) is read as
    // text: its strings are not checked one by one again. Any other is
    // read as bytes, so it is refused with serde_json's own error.
    match std::str::from_utf8(body) {
        Ok(text) => read_from(serde_json::Deserializer::from_str(text), keep),
        Err(_) => read_from(serde_json::Deserializer::from_slice(body), keep),
    }
}

fn read_from<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
    keep: usize,
) -> serde_json::Result<Page> {
    let page = deserializer.deserialize_any(Shaped(PageShape { keep }))?;
    deserializer.end()?;
    Ok(page)
}

/// What one part of a page is read into, from whichever JSON type it has.
/// Each method answers for one type; the defaults read the value as
/// serde_json builds a kept value (every element, every key) and answer
/// the default `Value`, the part's "missing".
trait Shape<'de>: Sized {
    type Value: Default;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(Key(|_| ()))?.is_some() {
            map.next_value_seed(Shaped(Whole))?;
        }
        Ok(Self::Value::default())
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Shaped(Whole))?.is_some() {}
        Ok(Self::Value::default())
    }

    fn str(self, _: &str) -> Self::Value {
        Self::Value::default()
    }

    /// An integer that fits `i64` (as `Value::as_i64` reads one).
    fn int(self, _: i64) -> Self::Value {
        Self::Value::default()
    }

    fn bool(self, _: bool) -> Self::Value {
        Self::Value::default()
    }
}

/// The serde seed and visitor of a [`Shape`]: it always asks for
/// `deserialize_any`, as a kept value is parsed, so serde_json applies the
/// same checks at the same places.
struct Shaped<S>(S);

impl<'de, S: Shape<'de>> DeserializeSeed<'de> for Shaped<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: Shape<'de>> Visitor<'de> for Shaped<S> {
    type Value = S::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<S::Value, E> {
        Ok(self.0.bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<S::Value, E> {
        Ok(self.0.int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<S::Value, E> {
        Ok(match i64::try_from(v) {
            Ok(v) => self.0.int(v),
            Err(_) => S::Value::default(),
        })
    }

    fn visit_f64<E>(self, _: f64) -> Result<S::Value, E> {
        Ok(S::Value::default())
    }

    fn visit_str<E>(self, v: &str) -> Result<S::Value, E> {
        Ok(self.0.str(v))
    }

    fn visit_unit<E>(self) -> Result<S::Value, E> {
        Ok(S::Value::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<S::Value, A::Error> {
        self.0.seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Value, A::Error> {
        self.0.map(map)
    }
}

/// An object key, read as serde_json reads any key (unescaped, checked as
/// UTF-8), then named by a function.
struct Key<F>(fn(&str) -> F);

impl<'de, F> DeserializeSeed<'de> for Key<F> {
    type Value = F;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<F, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<F> Visitor<'_> for Key<F> {
    type Value = F;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<F, E> {
        Ok((self.0)(v))
    }
}

/// Any value, read whole and dropped: a read field of an unexpected type.
struct Whole;

impl Shape<'_> for Whole {
    type Value = ();
}

/// A read field that is a string, an integer or a boolean.
#[derive(Default)]
enum Leaf {
    Text(String),
    Int(i64),
    True,
    #[default]
    Other,
}

impl Leaf {
    fn text(self) -> Option<String> {
        match self {
            Leaf::Text(text) => Some(text),
            _ => None,
        }
    }

    fn int(self) -> Option<i64> {
        match self {
            Leaf::Int(int) => Some(int),
            _ => None,
        }
    }
}

struct LeafShape;

impl Shape<'_> for LeafShape {
    type Value = Leaf;

    fn str(self, v: &str) -> Leaf {
        Leaf::Text(v.to_owned())
    }

    fn int(self, v: i64) -> Leaf {
        Leaf::Int(v)
    }

    fn bool(self, v: bool) -> Leaf {
        if v { Leaf::True } else { Leaf::Other }
    }
}

fn leaf<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Leaf, A::Error> {
    map.next_value_seed(Shaped(LeafShape))
}

/// The page: a list object.
struct PageShape {
    keep: usize,
}

enum PageField {
    Data,
    HasMore,
    Other,
}

impl<'de> Shape<'de> for PageShape {
    type Value = Page;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Page, A::Error> {
        let mut page = Page::default();
        let field = |key: &str| match key {
            "data" => PageField::Data,
            "has_more" => PageField::HasMore,
            _ => PageField::Other,
        };
        while let Some(key) = map.next_key_seed(Key(field))? {
            match key {
                PageField::Data => {
                    page.data = map.next_value_seed(Shaped(DataShape { keep: self.keep }))?;
                }
                PageField::HasMore => page.has_more = matches!(leaf(&mut map)?, Leaf::True),
                PageField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

/// `data`: the list of items.
struct DataShape {
    keep: usize,
}

impl<'de> Shape<'de> for DataShape {
    type Value = Option<Data>;

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Data>, A::Error> {
        let mut items = Vec::new();
        let mut len = 0;
        // Each item is finished once the next one is read, so that the last
        // one's id is there for the cursor without a copy per item.
        let mut last: Option<ItemFields> = None;
        while let Some(item) = seq.next_element_seed(Shaped(ItemShape))? {
            len += 1;
            if let Some(previous) = last.replace(item)
                && items.len() < self.keep
            {
                items.push(previous.finish());
            }
        }
        let last_id = last.as_ref().and_then(|item| item.id.clone());
        if let Some(last) = last
            && items.len() < self.keep
        {
            items.push(last.finish());
        }
        Ok(Some(Data {
            items,
            len,
            last_id,
        }))
    }
}

/// What a record reads of one item; `None` where the item has no such
/// field, or one of another type.
#[derive(Default)]
struct ItemFields {
    id: Option<String>,
    description: Option<String>,
    currency: Option<String>,
    quantity: Option<i64>,
    amount_subtotal: Option<i64>,
    amount_discount: Option<i64>,
    amount_tax: Option<i64>,
    amount_total: Option<i64>,
    price: PriceFields,
}

impl ItemFields {
    fn finish(self) -> LineItem {
        let price = self.price;
        let (product, product_id) = match price.product {
            Product::Id(id) => (None, Some(id)),
            Product::Object { name, id } => (name, id),
            Product::None => (None, None),
        };
        LineItem {
            id: self.id.unwrap_or_default(),
            product,
            product_id,
            price_id: price.id,
            description: self.description,
            // Null for custom and decimal-only prices, whose amount is not
            // a whole number of minor units.
            unit_amount: price.unit_amount,
            currency: self.currency.or(price.currency),
            quantity: self.quantity,
            amount_subtotal: self.amount_subtotal,
            amount_discount: self.amount_discount,
            amount_tax: self.amount_tax,
            amount_total: self.amount_total,
        }
    }
}

/// One item (`object: "item"`); anything but an object is an item with no
/// fields.
struct ItemShape;

enum ItemField {
    Id,
    Description,
    Currency,
    Quantity,
    AmountSubtotal,
    AmountDiscount,
    AmountTax,
    AmountTotal,
    Price,
    Other,
}

impl<'de> Shape<'de> for ItemShape {
    type Value = ItemFields;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemFields, A::Error> {
        let mut item = ItemFields::default();
        let field = |key: &str| match key {
            "id" => ItemField::Id,
            "description" => ItemField::Description,
            "currency" => ItemField::Currency,
            "quantity" => ItemField::Quantity,
            "amount_subtotal" => ItemField::AmountSubtotal,
            "amount_discount" => ItemField::AmountDiscount,
            "amount_tax" => ItemField::AmountTax,
            "amount_total" => ItemField::AmountTotal,
            "price" => ItemField::Price,
            _ => ItemField::Other,
        };
        while let Some(key) = map.next_key_seed(Key(field))? {
            match key {
                ItemField::Id => item.id = leaf(&mut map)?.text(),
                ItemField::Description => item.description = leaf(&mut map)?.text(),
                ItemField::Currency => item.currency = leaf(&mut map)?.text(),
                ItemField::Quantity => item.quantity = leaf(&mut map)?.int(),
                ItemField::AmountSubtotal => item.amount_subtotal = leaf(&mut map)?.int(),
                ItemField::AmountDiscount => item.amount_discount = leaf(&mut map)?.int(),
                ItemField::AmountTax => item.amount_tax = leaf(&mut map)?.int(),
                ItemField::AmountTotal => item.amount_total = leaf(&mut map)?.int(),
                ItemField::Price => item.price = map.next_value_seed(Shaped(PriceShape))?,
                ItemField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(item)
    }
}

/// What a record reads of an item's `price`; all missing when the price
/// is not an object.
#[derive(Default)]
struct PriceFields {
    id: Option<String>,
    unit_amount: Option<i64>,
    currency: Option<String>,
    product: Product,
}

struct PriceShape;

enum PriceField {
    Id,
    UnitAmount,
    Currency,
    Product,
    Other,
}

impl<'de> Shape<'de> for PriceShape {
    type Value = PriceFields;

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<PriceFields, A::Error> {
        let mut price = PriceFields::default();
        let field = |key: &str| match key {
            "id" => PriceField::Id,
            "unit_amount" => PriceField::UnitAmount,
            "currency" => PriceField::Currency,
            "product" => PriceField::Product,
            _ => PriceField::Other,
        };
        while let Some(key) = map.next_key_seed(Key(field))? {
            match key {
                PriceField::Id => price.id = leaf(&mut map)?.text(),
                PriceField::UnitAmount => price.unit_amount = leaf(&mut map)?.int(),
                PriceField::Currency => price.currency = leaf(&mut map)?.text(),
                PriceField::Product => price.product = map.next_value_seed(Shaped(ProductShape))?,
                PriceField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(price)
    }
}

/// `price.product`: expanded (an object: its name and id), or an id only
/// (the name is then unknown, and `description` is not taken for it).
#[derive(Default)]
enum Product {
    #[default]
    None,
    Id(String),
    Object {
        name: Option<String>,
        id: Option<String>,
    },
}

struct ProductShape;

enum ProductField {
    Id,
    Name,
    Other,
}

impl<'de> Shape<'de> for ProductShape {
    type Value = Product;

    fn str(self, v: &str) -> Product {
        Product::Id(v.to_owned())
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Product, A::Error> {
        let (mut name, mut id) = (None, None);
        let field = |key: &str| match key {
            "id" => ProductField::Id,
            "name" => ProductField::Name,
            _ => ProductField::Other,
        };
        while let Some(key) = map.next_key_seed(Key(field))? {
            match key {
                ProductField::Id => id = leaf(&mut map)?.text(),
                ProductField::Name => name = leaf(&mut map)?.text(),
                ProductField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Product::Object { name, id })
    }
}

#[cfg(test)]
#[path = "line_items_tests.rs"]
mod tests;
