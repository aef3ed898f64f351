//! Multi-entry writes on the writer connection, each in one `BEGIN IMMEDIATE` transaction:
//! FHIR transactions (all or nothing) and bulk imports.
//!
//! A transaction runs in the spec's order. Deletes first; then every POST and PUT entry gets
//! its final id (conditional creates and updates are matched now, new resources get a fresh
//! id) and every conditional reference is resolved, so that placeholders can be rewritten in
//! all bodies before the first of them is written; then the writes, then the reads. Because
//! the single writer connection holds the database's write lock from the first statement,
//! nothing another client writes can slip between a conditional match and the write it
//! decides.

use std::collections::{HashMap, HashSet};

use fhir::id::{LogicalId, ResourceType};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde_json::Value;

use crate::clock::WriteContext;
use crate::sqlite::index::Pending;
use crate::sqlite::write::{VersionWrite, current_resource, current_row, write_rows, write_version};
use crate::sqlite::{query, steps};
use crate::{
    ConditionalReference, EntryOutcome, Environment, Error, ExpectedVersion, ImportCounts, ImportResource, Method,
    Operation, TransactionError, TransactionRequest, WriteKind, WriteOutcome,
};

/// Runs `request` in one database transaction; on any failure nothing is written.
pub(crate) fn transaction(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    request: TransactionRequest,
) -> Result<Vec<EntryOutcome>, TransactionError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate).map_err(Error::from)?;
    let outcomes = Run { transaction: &transaction, context, env }.entries(request)?;
    transaction.commit().map_err(Error::from)?;
    Ok(outcomes)
}

/// Upserts `resources` in one database transaction, skipping those whose content is unchanged.
pub(crate) fn import(
    connection: &mut Connection,
    context: &WriteContext<'_>,
    env: Environment,
    resources: Vec<ImportResource>,
) -> Result<ImportCounts, Error> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut counts = ImportCounts::default();
    let mut pending = Pending::default();
    for resource in resources {
        match import_one(&transaction, context, env, resource, &mut pending)? {
            Some(WriteKind::Created) => counts.created += 1,
            Some(_) => counts.updated += 1,
            None => counts.unchanged += 1,
        }
    }
    pending.flush(&transaction)?;
    transaction.commit()?;
    Ok(counts)
}

/// Writes one imported resource unless the stored version already has the same content;
/// returns what was written, `None` for nothing.
fn import_one(
    transaction: &Transaction<'_>,
    context: &WriteContext<'_>,
    env: Environment,
    item: ImportResource,
    pending: &mut Pending,
) -> Result<Option<WriteKind>, Error> {
    let ImportResource { resource_type, id, body, index } = item;
    // Most imported resources are new: a key lookup settles that before any body is read.
    let live = current_row(transaction, env, &resource_type, id.as_str())?.is_some_and(|current| !current.deleted);
    if live && let Some(current) = query::read(transaction, env, &resource_type, &id)? {
        let last_updated = fhir::instant::format(current.last_updated);
        if body.stamp(current.version, &last_updated) == current.body {
            return Ok(None);
        }
    }
    let write = VersionWrite { resource_type: &resource_type, id: &id, expected: None, method: Method::Put };
    let written = write_rows(transaction, context, env, write, &body)?;
    pending.replace(transaction, written.row_id, index, written.fresh)?;
    Ok(Some(written.outcome.kind))
}

/// A POST or PUT entry once its id is known.
struct Write {
    resource_type: ResourceType,
    id: LogicalId,
    resource: Value,
    expected: ExpectedVersion,
    method: Method,
}

/// Where an entry stands while the transaction runs.
enum Step {
    Pending(Operation),
    Write(Write),
    Done(EntryOutcome),
    /// Moved out while being processed.
    Taken,
}

/// One running transaction.
struct Run<'a, 'c> {
    transaction: &'a Transaction<'c>,
    context: &'a WriteContext<'a>,
    env: Environment,
}

impl Run<'_, '_> {
    fn entries(&self, request: TransactionRequest) -> Result<Vec<EntryOutcome>, TransactionError> {
        let mut order: Vec<usize> = (0..request.entries.len()).collect();
        order.sort_by_key(|&index| request.entries[index].operation.phase());
        let mut placeholders = HashMap::new();
        let mut steps = Vec::with_capacity(request.entries.len());
        for entry in request.entries {
            steps.push(Step::Pending(entry.operation));
            placeholders.insert(steps.len() - 1, entry.placeholder);
        }
        for &index in &order {
            self.delete_or_resolve(&mut steps[index]).map_err(TransactionError::at(index))?;
        }
        check_overlaps(&steps)?;
        let mut targets = HashMap::new();
        for (index, step) in steps.iter().enumerate() {
            if let (Some(Some(placeholder)), Some(target)) = (placeholders.remove(&index), target(step)) {
                targets.insert(placeholder, target);
            }
        }
        for reference in &request.conditional_references {
            targets.insert(reference.reference.clone(), self.resolve_reference(reference)?);
        }
        for step in &mut steps {
            if let Step::Write(write) = step {
                fhir::references::rewrite(&mut write.resource, &|text| targets.get(text).cloned());
            }
        }
        for &index in &order {
            self.write_or_read(&mut steps[index]).map_err(TransactionError::at(index))?;
        }
        steps
            .into_iter()
            .map(|step| match step {
                Step::Done(outcome) => Ok(outcome),
                _ => Err(Error::Database("a transaction entry was left unprocessed".into()).into()),
            })
            .collect()
    }

    /// Phase one: deletes run; creates and updates learn their id.
    fn delete_or_resolve(&self, step: &mut Step) -> Result<(), Error> {
        let Step::Pending(operation) = step else { return Ok(()) };
        let (transaction, context, env) = (self.transaction, self.context, self.env);
        *step = match operation {
            Operation::Delete { resource_type, id, expected } => {
                let version = steps::delete(transaction, context, env, resource_type, id, *expected)?;
                Step::Done(EntryOutcome::Deleted { version })
            }
            Operation::ConditionalDelete { resource_type, criteria } => {
                let count = steps::conditional_delete(transaction, context, env, resource_type, criteria)?;
                Step::Done(EntryOutcome::ConditionallyDeleted { count })
            }
            Operation::Create { resource_type, resource, condition } => {
                let matched = match condition {
                    Some(criteria) => steps::single_match(transaction, env, resource_type, criteria)?,
                    None => None,
                };
                match matched {
                    Some(id) => Step::Done(EntryOutcome::Written(WriteOutcome {
                        kind: WriteKind::Unchanged,
                        resource: current_resource(transaction, env, resource_type, id.as_str())?,
                    })),
                    None => Step::Write(Write {
                        resource_type: resource_type.clone(),
                        id: LogicalId::generate(),
                        resource: std::mem::take(resource),
                        expected: None,
                        method: Method::Post,
                    }),
                }
            }
            Operation::Update { resource_type, id, resource, expected, method } => Step::Write(Write {
                resource_type: resource_type.clone(),
                id: id.clone(),
                resource: std::mem::take(resource),
                expected: *expected,
                method: *method,
            }),
            Operation::ConditionalUpdate { resource_type, criteria, resource } => {
                let body_id = resource.get("id").and_then(Value::as_str);
                let id = steps::conditional_update_id(transaction, env, resource_type, criteria, body_id)?;
                Step::Write(Write {
                    resource_type: resource_type.clone(),
                    id,
                    resource: std::mem::take(resource),
                    expected: None,
                    method: Method::Put,
                })
            }
            Operation::Read { .. } => return Ok(()),
        };
        Ok(())
    }

    /// Phase two: writes, then reads.
    fn write_or_read(&self, step: &mut Step) -> Result<(), Error> {
        let outcome = match std::mem::replace(step, Step::Taken) {
            Step::Write(Write { resource_type, id, resource, expected, method }) => {
                EntryOutcome::Written(write_version(
                    self.transaction,
                    self.context,
                    self.env,
                    &resource_type,
                    &id,
                    resource,
                    expected,
                    method,
                )?)
            }
            Step::Pending(Operation::Read { resource_type, id, version }) => {
                EntryOutcome::Read(self.read(&resource_type, &id, version)?)
            }
            Step::Done(outcome) => outcome,
            Step::Pending(_) | Step::Taken => {
                return Err(Error::Database("a transaction entry was not resolved".into()));
            }
        };
        *step = Step::Done(outcome);
        Ok(())
    }

    fn read(
        &self,
        resource_type: &ResourceType,
        id: &LogicalId,
        version: Option<u64>,
    ) -> Result<crate::StoredResource, Error> {
        let found = match version {
            Some(version) => query::vread(self.transaction, self.env, resource_type, id, version)?,
            None => query::read(self.transaction, self.env, resource_type, id)?,
        };
        found
            .filter(|resource| !resource.deleted)
            .ok_or_else(|| Error::NotFound { resource_type: resource_type.to_string(), id: id.to_string() })
    }

    /// The `Type/id` a conditional reference stands for: exactly one match is required.
    fn resolve_reference(&self, reference: &ConditionalReference) -> Result<String, TransactionError> {
        let found = steps::single_match(self.transaction, self.env, &reference.resource_type, &reference.criteria)
            .map_err(TransactionError::at(reference.entry))?;
        match found {
            Some(id) => Ok(format!("{}/{id}", reference.resource_type)),
            None => Err(TransactionError {
                entry: Some(reference.entry),
                error: Error::InvalidTransaction(format!(
                    "the conditional reference '{}' matches no resource",
                    reference.reference
                )),
            }),
        }
    }
}

/// The `Type/id` an entry's placeholder stands for, once known.
fn target(step: &Step) -> Option<String> {
    match step {
        Step::Write(write) => Some(format!("{}/{}", write.resource_type, write.id)),
        Step::Done(EntryOutcome::Written(outcome)) => {
            Some(format!("{}/{}", outcome.resource.resource_type, outcome.resource.id))
        }
        _ => None,
    }
}

/// The spec forbids two writes to one resource in a transaction.
fn check_overlaps(steps: &[Step]) -> Result<(), TransactionError> {
    let mut seen = HashSet::new();
    for (index, step) in steps.iter().enumerate() {
        if let Step::Write(Write { resource_type, id, .. }) = step
            && !seen.insert((resource_type.as_str(), id.as_str()))
        {
            return Err(TransactionError {
                entry: Some(index),
                error: Error::InvalidTransaction(format!(
                    "{resource_type}/{id} is written by more than one entry of the transaction"
                )),
            });
        }
    }
    Ok(())
}
