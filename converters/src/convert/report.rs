//! `report.json`: every source that was not simply passed through, one [`ReportItem`] each.

use crate::source::Ignored;
use serde::{Deserialize, Serialize};

pub const REPORT_FILE: &str = "report.json";

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportItem {
    pub key: String,
    /// `skipped`, `converted` or `misnamed`.
    pub action: String,
    /// The counted reason (`empty file`, `cmyk`, `png`, ...).
    pub reason: String,
    pub detail: String,
}

/// `report.json`: every source that was not simply passed through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub items: Vec<ReportItem>,
    pub ignored: Vec<Ignored>,
}

pub(super) fn item(key: &str, action: &str, reason: &str, detail: &str) -> ReportItem {
    ReportItem {
        key: key.into(),
        action: action.into(),
        reason: reason.into(),
        detail: detail.into(),
    }
}
