//! What the POS records, parsed from its JSON and validated (CONTRACT §4).
//!
//! Each record is parsed twice in its life: once on the recording call (to validate it and
//! to store its canonical JSON) and once by the worker when it is sent, from that JSON.

pub mod catalog;
pub mod fields;
pub mod money;
mod pos_events;
pub(crate) mod raw;
pub mod store_events;

pub use pos_events::{
    CancelLine, Cancellation, Payment, PaymentView, Return, ReturnLine, Sale, SaleLine,
    SaleLineView, SaleView,
};

/// What the parser needs from the configuration to fill defaults.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub store_id: String,
    pub currency: String,
}

/// The kinds of outbox job, stored as their name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Sale,
    Return,
    Cancellation,
    Receipt,
    Customer,
    GoodsReception,
    /// Absolute stock levels waiting in `stock_push` (one job drains them all).
    StockPush,
    Pickup,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Sale => "sale",
            JobKind::Return => "return",
            JobKind::Cancellation => "cancellation",
            JobKind::Receipt => "receipt",
            JobKind::Customer => "customer",
            JobKind::GoodsReception => "goods_reception",
            JobKind::StockPush => "stock_push",
            JobKind::Pickup => "pickup",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "sale" => Some(JobKind::Sale),
            "return" => Some(JobKind::Return),
            "cancellation" => Some(JobKind::Cancellation),
            "receipt" => Some(JobKind::Receipt),
            "customer" => Some(JobKind::Customer),
            "goods_reception" => Some(JobKind::GoodsReception),
            "stock_push" => Some(JobKind::StockPush),
            "pickup" => Some(JobKind::Pickup),
            _ => None,
        }
    }
}
