//! FHIR transactions (all or nothing) in the store's write transaction.
//!
//! A transaction runs in the spec's order. Deletes first; then every POST and PUT entry gets
//! its final id (conditional creates and updates are matched now, new resources get a fresh
//! id) and every conditional reference is resolved, so that placeholders can be rewritten in
//! all bodies before the first of them is written; then the writes, then the reads. Because
//! SQLite's one writer holds the write lock from the first statement, and PostgreSQL's
//! transaction is serializable, nothing another client writes can slip between a conditional
//! match and the write it decides (on PostgreSQL one of the two transactions fails and is
//! retried).

use std::collections::{HashMap, HashSet};

use fhir::id::{LogicalId, ResourceType};
use serde_json::Value;

use crate::clock::WriteContext;
use crate::sql::db::Db;
use crate::sql::read::{self, matched};
use crate::sql::write::{self as steps, VersionWrite, write_version};
use crate::{
    ConditionalReference, EntryOutcome, Environment, Error, ExpectedVersion, Method, Operation, TransactionError,
    TransactionRequest, WriteKind, WriteOutcome,
};

/// Runs `request` in one database transaction; on any failure nothing is written.
pub(crate) fn transaction(
    db: &mut dyn Db,
    context: &WriteContext<'_>,
    env: Environment,
    request: TransactionRequest,
) -> Result<Vec<EntryOutcome>, TransactionError> {
    Run { db, context, env }.entries(request)
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
struct Run<'a> {
    db: &'a mut dyn Db,
    context: &'a WriteContext<'a>,
    env: Environment,
}

impl Run<'_> {
    fn entries(&mut self, request: TransactionRequest) -> Result<Vec<EntryOutcome>, TransactionError> {
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
    fn delete_or_resolve(&mut self, step: &mut Step) -> Result<(), Error> {
        let Step::Pending(operation) = step else { return Ok(()) };
        let (db, context, env) = (&mut *self.db, self.context, self.env);
        *step = match operation {
            Operation::Delete { resource_type, id, expected } => {
                let version = steps::delete(db, context, env, resource_type, id, *expected)?;
                Step::Done(EntryOutcome::Deleted { version })
            }
            Operation::ConditionalDelete { resource_type, criteria } => {
                let count = steps::conditional_delete(db, context, env, resource_type, criteria)?;
                Step::Done(EntryOutcome::ConditionallyDeleted { count })
            }
            Operation::Create { resource_type, resource, condition } => {
                let found = match condition {
                    Some(criteria) => steps::single_match(db, env, resource_type, criteria)?,
                    None => None,
                };
                match found {
                    Some(id) => Step::Done(EntryOutcome::Written(WriteOutcome {
                        kind: WriteKind::Unchanged,
                        resource: matched(db, env, resource_type, &id)?,
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
                let id = steps::conditional_update_id(db, env, resource_type, criteria, body_id)?;
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
    fn write_or_read(&mut self, step: &mut Step) -> Result<(), Error> {
        let outcome = match std::mem::replace(step, Step::Taken) {
            Step::Write(Write { resource_type, id, resource, expected, method }) => {
                let write = VersionWrite::new(&resource_type, &id, expected, method);
                EntryOutcome::Written(write_version(&mut *self.db, self.context, self.env, write, resource)?)
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
        &mut self,
        resource_type: &ResourceType,
        id: &LogicalId,
        version: Option<u64>,
    ) -> Result<crate::StoredResource, Error> {
        let found = match version {
            Some(version) => read::vread(&mut *self.db, self.env, resource_type, id, version)?,
            None => read::read(&mut *self.db, self.env, resource_type, id)?,
        };
        found
            .filter(|resource| !resource.deleted)
            .ok_or_else(|| Error::NotFound { resource_type: resource_type.to_string(), id: id.to_string() })
    }

    /// The `Type/id` a conditional reference stands for: exactly one match is required.
    fn resolve_reference(&mut self, reference: &ConditionalReference) -> Result<String, TransactionError> {
        let found = steps::single_match(&mut *self.db, self.env, &reference.resource_type, &reference.criteria)
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
