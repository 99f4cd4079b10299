//! Refuses GraphQL text that PostgreSQL cannot store (a NUL character) in any argument of the
//! document or in any variable, before anything runs, over every transport (HTTP, WebSocket,
//! the schema executed directly), with the same message REST gives.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::parser::Positioned;
use async_graphql::Value as ConstValue;
use async_graphql::{ErrorExtensionValues, Name, ServerError, ServerResult, Variables};
use async_graphql_value::Value;

use crate::input::fields::nul_message;

/// The extension (stateless).
pub struct StorableText;

impl ExtensionFactory for StorableText {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(StorableText)
    }
}

#[async_trait::async_trait]
impl Extension for StorableText {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let mut found = Vec::new();
        for (name, value) in variables.iter() {
            constant(&format!("${name}"), value, &mut found);
        }
        for (_, operation) in document.operations.iter() {
            for variable in &operation.node.variable_definitions {
                if let Some(default) = &variable.node.default_value {
                    constant(
                        &format!("${}", variable.node.name.node),
                        &default.node,
                        &mut found,
                    );
                }
            }
            selections(&operation.node.selection_set.node, &mut found);
        }
        for fragment in document.fragments.values() {
            selections(&fragment.node.selection_set.node, &mut found);
        }
        if found.is_empty() {
            return Ok(document);
        }
        let details: Vec<String> = found.iter().map(|f| nul_message(f)).collect();
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", "VALIDATION_FAILED");
        extensions.set(
            "details",
            ConstValue::List(details.iter().cloned().map(ConstValue::String).collect()),
        );
        let mut error =
            ServerError::new(format!("Validation failed: {}", details.join("; ")), None);
        error.extensions = Some(extensions);
        Err(error)
    }
}

fn selections(set: &SelectionSet, found: &mut Vec<String>) {
    for item in &set.items {
        match &item.node {
            Selection::Field(field) => {
                arguments(&field.node.arguments, found);
                for directive in &field.node.directives {
                    arguments(&directive.node.arguments, found);
                }
                selections(&field.node.selection_set.node, found);
            }
            Selection::FragmentSpread(spread) => {
                for directive in &spread.node.directives {
                    arguments(&directive.node.arguments, found);
                }
            }
            Selection::InlineFragment(inline) => selections(&inline.node.selection_set.node, found),
        }
    }
}

fn arguments(arguments: &[(Positioned<Name>, Positioned<Value>)], found: &mut Vec<String>) {
    for (name, value) in arguments {
        literal(name.node.as_str(), &value.node, found);
    }
}

/// A value written in the document (variables inside it are checked as variables).
fn literal(path: &str, value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains('\0') => found.push(path.to_owned()),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                literal(&format!("{path}[{i}]"), item, found);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                literal(&format!("{path}.{key}"), item, found);
            }
        }
        _ => {}
    }
}

/// A variable's value (from JSON, so its object keys are free text too).
fn constant(path: &str, value: &ConstValue, found: &mut Vec<String>) {
    match value {
        ConstValue::String(s) if s.contains('\0') => found.push(path.to_owned()),
        ConstValue::List(items) => {
            for (i, item) in items.iter().enumerate() {
                constant(&format!("{path}[{i}]"), item, found);
            }
        }
        ConstValue::Object(fields) => {
            for (key, item) in fields {
                if key.contains('\0') {
                    found.push(format!("a key of {path}"));
                } else {
                    constant(&format!("{path}.{key}"), item, found);
                }
            }
        }
        _ => {}
    }
}
