//! A kind's outputs as a type. The struct a kind's `run` returns and the list the
//! catalog declares come from one definition ([`step_outputs!`]), so a step cannot emit
//! an output the catalog, the schema, the docs and the template checks do not know.

use serde_json::Value as Json;

use super::{OutputInfo, Outputs, StepError};

/// The outputs of one kind: its fields are the outputs, in the order declared.
pub trait StepOutputs: serde::Serialize + schemars::JsonSchema + Sized {
    /// One entry per field, in field order: the field's name and its doc comment.
    const DECLARED: &'static [OutputInfo];

    /// The outputs as the journal and the templates read them: a map, in field order.
    ///
    /// # Errors
    /// A value that has no JSON form (never for the kinds' plain data).
    fn into_map(self) -> Result<Outputs, StepError> {
        match serde_json::to_value(self) {
            Ok(Json::Object(map)) => Ok(map),
            Ok(other) => Err(StepError::Failed(format!("the outputs are not a map but {other}"))),
            Err(error) => Err(StepError::Failed(format!("the outputs have no JSON form: {error}"))),
        }
    }
}

/// Defines a kind's outputs struct and, from the same fields and doc comments, its
/// [`StepOutputs::DECLARED`] list. Every field needs a doc comment: it is the output's
/// description in `dr-plan steps`, the docs pages and the JSON Schema. Lines of a doc
/// comment are joined with a space.
macro_rules! step_outputs {
    (
        $(#[doc = $struct_doc:literal])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])+
                pub $field:ident: $type:ty,
            )*
        }
    ) => {
        $(#[doc = $struct_doc])*
        #[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
        pub struct $name {
            $(
                $(#[doc = $doc])+
                pub $field: $type,
            )*
        }

        impl $crate::kinds::StepOutputs for $name {
            const DECLARED: &'static [$crate::kinds::OutputInfo] = &[$(
                $crate::kinds::OutputInfo {
                    name: stringify!($field),
                    description: concat!($($doc),+).trim_ascii(),
                },
            )*];
        }
    };
}

pub(crate) use step_outputs;
