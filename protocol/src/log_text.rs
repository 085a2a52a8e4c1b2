//! The text of a `tracing` event as Sandpod's log lines carry it (the agent's lines to the host,
//! the runtime's runc-style JSON lines): the message, then the other fields as ` key=value`.
use std::fmt::Write as _;

use tracing::field::{Field, Visit};

/// Collects an event's message and fields.
#[derive(Default)]
struct EventText {
    msg: String,
    fields: String,
}

impl Visit for EventText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// `message key=value …` of `event`.
pub fn event_text(event: &tracing::Event<'_>) -> String {
    let mut t = EventText::default();
    event.record(&mut t);
    t.msg + &t.fields
}
