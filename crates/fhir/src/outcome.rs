//! OperationOutcome issues: the one shape every FHIR error and warning takes.
//!
//! Domain code reports problems as [`Issue`]s; the server decides the HTTP status and turns
//! them into an `OperationOutcome` resource with [`operation_outcome`].

use serde_json::{Value, json};

/// How bad an issue is (`OperationOutcome.issue.severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    /// The FHIR code for this severity.
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The kind of issue (`OperationOutcome.issue.code`, value set `issue-type`); only the codes
/// Ignis reports are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    Processing,
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    Exception,
    Timeout,
    Throttled,
    Informational,
}

impl IssueType {
    /// The FHIR code for this issue type.
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Processing => "processing",
            IssueType::NotSupported => "not-supported",
            IssueType::Duplicate => "duplicate",
            IssueType::MultipleMatches => "multiple-matches",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::TooLong => "too-long",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::Extension => "extension",
            IssueType::TooCostly => "too-costly",
            IssueType::BusinessRule => "business-rule",
            IssueType::Conflict => "conflict",
            IssueType::Transient => "transient",
            IssueType::Exception => "exception",
            IssueType::Timeout => "timeout",
            IssueType::Throttled => "throttled",
            IssueType::Informational => "informational",
        }
    }
}

/// One problem (or note) about a request or a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// A human-readable explanation.
    pub diagnostics: String,
    /// FHIRPath of the element the issue is about (e.g. `Patient.name[0].given[1]`), if any.
    pub expression: Option<String>,
}

impl Issue {
    /// An error-severity issue without a location.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: None }
    }

    /// An error-severity issue about the element at `expression`.
    pub fn error_at(code: IssueType, expression: impl Into<String>, diagnostics: impl Into<String>) -> Issue {
        Issue { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: Some(expression.into()) }
    }

    /// A warning-severity issue.
    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue { severity: Severity::Warning, code, diagnostics: diagnostics.into(), expression: None }
    }

    /// An information-severity issue.
    pub fn information(code: IssueType, diagnostics: impl Into<String>) -> Issue {
        Issue { severity: Severity::Information, code, diagnostics: diagnostics.into(), expression: None }
    }

    /// True for `error` and `fatal` issues, which make a request fail.
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }
}

/// Builds an `OperationOutcome` resource from issues. An empty list yields the single
/// informational "All OK" issue the spec expects.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = if issues.is_empty() {
        vec![json!({"severity": "information", "code": "informational", "diagnostics": "All OK"})]
    } else {
        issues.iter().map(issue_json).collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

fn issue_json(issue: &Issue) -> Value {
    let mut value = json!({
        "severity": issue.severity.code(),
        "code": issue.code.code(),
        "diagnostics": issue.diagnostics,
    });
    if let Some(expression) = &issue.expression {
        value["expression"] = json!([expression]);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_outcome_is_all_ok() {
        let outcome = operation_outcome(&[]);
        assert_eq!(outcome["issue"][0]["code"], "informational");
    }

    #[test]
    fn issue_carries_expression() {
        let outcome = operation_outcome(&[Issue::error_at(IssueType::Value, "Patient.birthDate", "bad date")]);
        assert_eq!(outcome["issue"][0]["expression"][0], "Patient.birthDate");
        assert_eq!(outcome["issue"][0]["severity"], "error");
    }
}
