//! The figures the source document states, beside the exact ones the model
//! computes from its inputs ([`source`](crate::source)), so that the report
//! can show where the document rounded: 3.65 PB written as 3.6 PB, 23.1 MB/s
//! as 25 MB/s, and 913 shards as 900 and then 1 K.

use crate::figures::Figure;

/// A figure as the source document states it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DocumentFigure {
    /// The figure as written in the document, e.g. `"3.6 PB"`.
    pub stated: &'static str,
    /// The stated figure as a number in the figure's own unit (bytes,
    /// bytes per second or a count), e.g. `3.6e15`.
    pub stated_value: f64,
    /// How the stated figure relates to the exact one, when it was rounded.
    pub note: Option<&'static str>,
}

impl DocumentFigure {
    /// Whether the document states the figure without rounding.
    pub fn is_exact(&self) -> bool {
        self.note.is_none()
    }

    /// The stated figure with its rounding note, for tables.
    pub fn describe(&self) -> String {
        match self.note {
            Some(note) => format!("{} ({note})", self.stated),
            None => self.stated.to_owned(),
        }
    }
}

/// What the source document states for `figure`, if it states anything.
///
/// ```
/// use estimation::{document::document_figure, figures::Figure};
/// let shards = document_figure(Figure::Shards).unwrap();
/// assert_eq!(shards.stated, "900, then 1 K");
/// assert!(!shards.is_exact());
/// assert!(document_figure(Figure::MessagesPerDay).unwrap().is_exact());
/// ```
pub fn document_figure(figure: Figure) -> Option<DocumentFigure> {
    let stated = match figure {
        Figure::MessagesPerDay => DocumentFigure {
            stated: "20 billion",
            stated_value: 20e9,
            note: None,
        },
        Figure::StorageBytesPerDay => DocumentFigure {
            stated: "2 TB",
            stated_value: 2e12,
            note: None,
        },
        Figure::StorageBytesTotal => DocumentFigure {
            stated: "3.6 PB",
            stated_value: 3.6e15,
            note: Some("rounded down from 3.65 PB"),
        },
        Figure::BandwidthIn | Figure::BandwidthOut => DocumentFigure {
            stated: "25 MB/s",
            stated_value: 25e6,
            note: Some("rounded up from 23.1 MB/s"),
        },
        Figure::ServersByConnections | Figure::Servers => DocumentFigure {
            stated: "10 K",
            stated_value: 10e3,
            note: None,
        },
        Figure::Shards => DocumentFigure {
            stated: "900, then 1 K",
            stated_value: 1e3,
            note: Some("from 3.6 PB / 4 TB; exact: 912.5, so 913"),
        },
        _ => return None,
    };
    Some(stated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Inputs;

    #[test]
    fn stated_figures_are_within_ten_percent_of_the_exact_ones() {
        let plan = Inputs::source_design().plan().unwrap();
        for figure in Figure::ALL {
            let (Some(stated), Some(exact)) = (document_figure(figure), figure.value(&plan)) else {
                continue;
            };
            let error = (stated.stated_value - exact).abs() / exact;
            assert!(error < 0.1, "{figure:?}: {stated:?} vs {exact}");
            assert_eq!(
                stated.is_exact(),
                stated.stated_value == exact,
                "{figure:?}"
            );
        }
    }
}
