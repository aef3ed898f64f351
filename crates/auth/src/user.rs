//! People who sign in: patients, practitioners and operators, kept as platform records.
//!
//! A user has a password (Argon2id), a FHIR resource it is (`fhirUser`), the patients it may
//! act for (a parent acts for several), and for practitioners and operators (patients when they
//! choose) a TOTP second factor. Wrong passwords and codes count towards a lockout; the count is
//! written with [`records::modify`], so concurrent attempts are all counted.
//!
//! What a caller learns is limited on purpose: an unknown username and a wrong password give the
//! same error after the same Argon2 work; a locked account says so, and until when, without
//! checking the password.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};
use time::OffsetDateTime;

use crate::password::{self, PasswordError};
use crate::secret::{SecretError, SecretKey};
use crate::totp::{self, Enrolment, TotpError, TotpState};

/// Who the user is to the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Patient,
    Practitioner,
    Operator,
    /// A member of an integrating company's account: uses the `/api/`, never authorizes apps
    /// (no FHIR user, no patient data).
    Developer,
}

impl Role {
    /// The role named on the command line.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "patient" => Some(Role::Patient),
            "practitioner" => Some(Role::Practitioner),
            "operator" => Some(Role::Operator),
            "developer" => Some(Role::Developer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Practitioner => "practitioner",
            Role::Operator => "operator",
            Role::Developer => "developer",
        }
    }

    /// Practitioners and operators see many patients' data: a password alone is not enough.
    pub fn requires_totp(self) -> bool {
        matches!(self, Role::Practitioner | Role::Operator)
    }

    /// Whether the user may sign in to authorize a SMART app (developers have no FHIR user).
    pub fn authorizes_apps(self) -> bool {
        !matches!(self, Role::Developer)
    }

    /// The resource types this role's `fhirUser` may be.
    fn fhir_user_types(self) -> &'static [&'static str] {
        match self {
            Role::Patient => &["Patient", "RelatedPerson", "Person"],
            Role::Practitioner => &["Practitioner"],
            Role::Operator => &["Practitioner", "Person", "Patient", "RelatedPerson"],
            Role::Developer => &[],
        }
    }
}

/// A user as stored.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Lowercase; unique.
    pub username: String,
    /// Argon2id, PHC string.
    pub password_hash: String,
    pub role: Role,
    /// The user's FHIR resource, `Type/id` (`Patient/85`, `Practitioner/12`).
    pub fhir_user: String,
    /// The Patient ids the user may act for (a patient's own, more for a parent).
    #[serde(default)]
    pub patients: Vec<String>,
    /// The enrolled second factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpState>,
    /// Failed sign-ins (passwords and codes) since the last success or lockout.
    #[serde(default)]
    pub failed_sign_ins: u32,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "instant")]
    pub locked_until: Option<OffsetDateTime>,
}

impl fmt::Debug for User {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("User")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("fhir_user", &self.fhir_user)
            .field("patients", &self.patients)
            .field("totp", &self.totp)
            .field("failed_sign_ins", &self.failed_sign_ins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

impl Kind for User {
    const KIND: &'static str = "user";

    fn keys(&self) -> Vec<RecordKey> {
        let mut keys = vec![RecordKey::unique("username", &self.username)];
        if !self.fhir_user.is_empty() {
            keys.push(RecordKey::shared("fhir_user", &self.fhir_user));
        }
        keys
    }
}

impl User {
    /// Until when the account is locked, if it is at `now`.
    pub fn locked_at(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.locked_until.filter(|until| *until > now)
    }
}

/// When repeated failures lock an account, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failed attempts in a row that lock the account.
    pub max_failures: u32,
    pub lockout: time::Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { max_failures: 5, lockout: time::Duration::minutes(15) }
    }
}

/// A user to create; the password in clear, hashed before it is stored.
#[derive(Clone)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub fhir_user: String,
    /// Patients the user acts for besides its own (a patient whose `fhir_user` is a Patient
    /// always acts for that one).
    pub patients: Vec<String>,
    /// Enrol TOTP for a patient (always enrolled for the other roles).
    pub enrol_totp: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NewUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("fhir_user", &self.fhir_user)
            .field("patients", &self.patients)
            .field("enrol_totp", &self.enrol_totp)
            .finish_non_exhaustive()
    }
}

/// The result of a right password.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordOutcome {
    /// No second factor is enrolled: the user is signed in.
    SignedIn(Versioned<User>),
    /// The user must now pass [`check_second_factor`].
    NeedsSecondFactor(Versioned<User>),
}

/// Why a user cannot be created or signed in. Messages name the check that failed and never
/// a secret, nor whether a username exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the username or password is wrong")]
    InvalidCredentials,
    #[error("the account is locked until {} after too many failed sign-ins", instant::text(.until))]
    Locked { until: OffsetDateTime },
    #[error("the one-time code or recovery code is wrong or was already used")]
    InvalidSecondFactor,
    #[error("the account has no second factor enrolled")]
    NoSecondFactor,
    #[error("{0}")]
    InvalidUser(String),
    #[error("a user named '{0}' already exists")]
    UsernameTaken(String),
    #[error("the password is not acceptable: {0}")]
    Password(PasswordError),
    #[error("the server's secret key: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<TotpError> for AuthError {
    fn from(error: TotpError) -> AuthError {
        match error {
            TotpError::WrongCode | TotpError::Replayed | TotpError::WrongRecoveryCode => AuthError::InvalidSecondFactor,
            TotpError::Secret(error) => AuthError::Secret(error),
            TotpError::Invalid(reason) => AuthError::InvalidUser(format!("the TOTP secret: {reason}")),
        }
    }
}

/// Who writes the records of sign-in attempts.
const SIGN_IN: &str = "sign-in";

/// Creates a user, by `by`. Practitioners and operators (and patients with `enrol_totp`) are
/// enrolled in TOTP at once; the [`Enrolment`] is returned to be shown once, never stored.
pub async fn create(
    store: &dyn Records,
    key: &SecretKey,
    new: NewUser,
    by: &str,
) -> Result<(Versioned<User>, Option<Enrolment>), AuthError> {
    let username = validate_username(&new.username)?;
    let fhir_user = validate_fhir_user(new.role, &new.fhir_user)?;
    let patients = patients_of(new.role, &fhir_user, &new.patients)?;
    let password_hash = password::hash(&new.password).map_err(AuthError::Password)?;
    let (totp, enrolment) = if new.role.requires_totp() || new.enrol_totp {
        let (state, enrolment) = totp::enrol(key, &username)?;
        (Some(state), Some(enrolment))
    } else {
        (None, None)
    };
    let user = User {
        username,
        password_hash,
        role: new.role,
        fhir_user,
        patients,
        totp,
        failed_sign_ins: 0,
        locked_until: None,
    };
    let id = uuid::Uuid::new_v4().to_string();
    match records::create(store, &id, &user, by).await {
        Ok(created) => Ok((created, enrolment)),
        Err(store::Error::RecordKeyTaken { name, .. }) if name == "username" => {
            Err(AuthError::UsernameTaken(user.username))
        }
        Err(error) => Err(error.into()),
    }
}

/// The user named `username` (any case).
pub async fn find_by_username(store: &dyn Records, username: &str) -> Result<Option<Versioned<User>>, AuthError> {
    let username = username.to_ascii_lowercase();
    Ok(records::find::<User>(store, "username", &username).await?.into_iter().next())
}

/// Checks `username`'s password at `now`. A wrong password counts towards the lockout; a right
/// one signs the user in, or asks for the second factor when one is enrolled.
pub async fn check_password(
    store: &dyn Records,
    username: &str,
    password: &str,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<PasswordOutcome, AuthError> {
    // Refused before any lookup, so it says nothing about the username either.
    if password.is_empty() || password.len() > password::MAX_LEN {
        return Err(AuthError::InvalidCredentials);
    }
    let Some(user) = find_by_username(store, username).await? else {
        // The same Argon2 work as for a known user, so timing does not tell them apart.
        password::verify(dummy_hash(), password);
        return Err(AuthError::InvalidCredentials);
    };
    if let Some(until) = user.value.locked_at(now) {
        return Err(AuthError::Locked { until });
    }
    let right = password::verify(&user.value.password_hash, password);
    if !right {
        return Err(record_failure(store, &user.id, policy, now).await);
    }
    // Another attempt may have locked the account while this one hashed: a lock wins.
    let Some(current) = records::get::<User>(store, &user.id).await? else {
        return Err(AuthError::InvalidCredentials);
    };
    if let Some(until) = current.value.locked_at(now) {
        return Err(AuthError::Locked { until });
    }
    if current.value.totp.is_some() {
        // Failures are not forgiven until the second factor passes too.
        return Ok(PasswordOutcome::NeedsSecondFactor(current));
    }
    if current.value.failed_sign_ins == 0 && current.value.locked_until.is_none() {
        return Ok(PasswordOutcome::SignedIn(current));
    }
    record_success(store, &user.id, now).await.map(PasswordOutcome::SignedIn)
}

/// Checks the second factor of `username`, whose password was just accepted: a TOTP code (its
/// step then used up) or a recovery code (then spent). A wrong code counts towards the lockout.
pub async fn check_second_factor(
    store: &dyn Records,
    key: &SecretKey,
    username: &str,
    code: &str,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<Versioned<User>, AuthError> {
    let Some(user) = find_by_username(store, username).await? else {
        return Err(AuthError::InvalidCredentials);
    };
    if let Some(until) = user.value.locked_at(now) {
        return Err(AuthError::Locked { until });
    }
    let Some(state) = &user.value.totp else {
        return Err(AuthError::NoSecondFactor);
    };
    let authenticator = state.authenticator(key)?;
    // Checked and recorded in one read-modify-write, so a code raced twice passes once.
    let mut outcome = Attempt::Failed;
    let updated = records::modify::<User>(store, &user.id, SIGN_IN, |user| {
        outcome = match user.locked_at(now) {
            Some(until) => Attempt::Locked(until),
            None => match user.totp.as_mut().map(|state| state.verify(&authenticator, code, now)) {
                None => Attempt::NoSecondFactor,
                Some(Ok(_)) => {
                    user.failed_sign_ins = 0;
                    user.locked_until = None;
                    Attempt::Succeeded
                }
                Some(Err(_)) => count_failure(user, policy, now),
            },
        };
    })
    .await?;
    match outcome {
        Attempt::Succeeded => Ok(updated),
        Attempt::Failed => Err(AuthError::InvalidSecondFactor),
        Attempt::Locked(until) => Err(AuthError::Locked { until }),
        Attempt::NoSecondFactor => Err(AuthError::NoSecondFactor),
    }
}

/// What one attempt came to, decided on the record as read inside [`records::modify`].
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Succeeded,
    Failed,
    Locked(OffsetDateTime),
    NoSecondFactor,
}

/// Counts a failure on `user`; the last one allowed locks the account and restarts the count.
fn count_failure(user: &mut User, policy: &Policy, now: OffsetDateTime) -> Attempt {
    user.failed_sign_ins = user.failed_sign_ins.saturating_add(1);
    if user.failed_sign_ins >= policy.max_failures.max(1) {
        user.failed_sign_ins = 0;
        user.locked_until = Some(now + policy.lockout);
    }
    Attempt::Failed
}

/// Records a wrong password and returns the error to answer: a lock another attempt set in the
/// meantime wins, so no answer says whether the password was right once the account is locked.
async fn record_failure(store: &dyn Records, id: &str, policy: &Policy, now: OffsetDateTime) -> AuthError {
    let mut outcome = Attempt::Failed;
    let written = records::modify::<User>(store, id, SIGN_IN, |user| {
        outcome = match user.locked_at(now) {
            Some(until) => Attempt::Locked(until),
            None => count_failure(user, policy, now),
        };
    })
    .await;
    match (written, outcome) {
        (Err(error), _) => error.into(),
        (Ok(_), Attempt::Locked(until)) => AuthError::Locked { until },
        (Ok(_), _) => AuthError::InvalidCredentials,
    }
}

/// Clears the failure count after a full sign-in, unless a lock came first.
async fn record_success(store: &dyn Records, id: &str, now: OffsetDateTime) -> Result<Versioned<User>, AuthError> {
    let mut locked = None;
    let updated = records::modify::<User>(store, id, SIGN_IN, |user| {
        locked = user.locked_at(now);
        if locked.is_none() {
            user.failed_sign_ins = 0;
            user.locked_until = None;
        }
    })
    .await?;
    match locked {
        Some(until) => Err(AuthError::Locked { until }),
        None => Ok(updated),
    }
}

/// A hash of nothing anyone knows, with the current parameters, made once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| password::hash("ignis: no such user").unwrap_or_default())
}

/// A username as stored: lowercase, 1 to 64 of `a-z 0-9 . _ - @`, characters that need no
/// escaping in an otpauth URI or a log line.
pub fn validate_username(username: &str) -> Result<String, AuthError> {
    let username = username.to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@');
    if username.is_empty() || username.len() > 64 || !username.chars().all(allowed) {
        return Err(AuthError::InvalidUser(
            "a username is 1 to 64 characters among letters, digits, '.', '_', '-' and '@'".into(),
        ));
    }
    Ok(username)
}

/// `fhir_user` if it is `Type/id` with a type `role` allows and a valid FHIR id.
fn validate_fhir_user(role: Role, fhir_user: &str) -> Result<String, AuthError> {
    let allowed = role.fhir_user_types();
    if allowed.is_empty() {
        return match fhir_user {
            "" => Ok(String::new()),
            _ => Err(AuthError::InvalidUser(format!("a {} has no FHIR user", role.as_str()))),
        };
    }
    let invalid = || {
        AuthError::InvalidUser(format!(
            "the FHIR user '{fhir_user}' of a {} is not Type/id with Type one of {}",
            role.as_str(),
            allowed.join(", ")
        ))
    };
    let (resource_type, id) = fhir_user.split_once('/').ok_or_else(invalid)?;
    if !allowed.contains(&resource_type) || !is_fhir_id(id) {
        return Err(invalid());
    }
    Ok(fhir_user.to_owned())
}

/// The patients a user acts for: a patient's own first, then the others given, once each.
fn patients_of(role: Role, fhir_user: &str, others: &[String]) -> Result<Vec<String>, AuthError> {
    if let Some(bad) = others.iter().find(|id| !is_fhir_id(id)) {
        return Err(AuthError::InvalidUser(format!("'{bad}' is not a Patient id")));
    }
    if role != Role::Patient {
        if others.is_empty() {
            return Ok(Vec::new());
        }
        return Err(AuthError::InvalidUser(format!(
            "only a patient account acts for patients, not a {}",
            role.as_str()
        )));
    }
    let own = fhir_user.strip_prefix("Patient/");
    let mut patients: Vec<String> = Vec::with_capacity(others.len() + 1);
    for id in own.into_iter().chain(others.iter().map(String::as_str)) {
        if !patients.iter().any(|known| known == id) {
            patients.push(id.to_owned());
        }
    }
    if patients.is_empty() {
        return Err(AuthError::InvalidUser(format!(
            "a patient account whose FHIR user is '{fhir_user}' needs the Patient ids it acts for"
        )));
    }
    Ok(patients)
}

/// A FHIR `id`: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
}

/// Instants in records as RFC 3339 text, readable in the record's JSON.
mod instant {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub(super) fn text(instant: &OffsetDateTime) -> String {
        instant.format(&Rfc3339).unwrap_or_else(|_| instant.to_string())
    }

    pub(super) fn serialize<S: Serializer>(value: &Option<OffsetDateTime>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(instant) => serializer.serialize_some(&text(instant)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<OffsetDateTime>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use store::sqlite::SqliteStore;

    use crate::totp::Authenticator;

    struct Fixture {
        _folder: tempfile::TempDir,
        store: Arc<SqliteStore>,
        key: SecretKey,
    }

    fn fixture() -> Fixture {
        let folder = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&folder.path().join("users.db")).unwrap());
        Fixture { _folder: folder, store, key: SecretKey::generate().unwrap() }
    }

    fn new_user(username: &str, role: Role, fhir_user: &str) -> NewUser {
        NewUser {
            username: username.into(),
            password: "correct horse battery".into(),
            role,
            fhir_user: fhir_user.into(),
            patients: Vec::new(),
            enrol_totp: false,
        }
    }

    const T0: i64 = 1_800_000_015;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap()
    }

    #[tokio::test]
    async fn a_patient_signs_in_with_the_right_password_only() {
        let f = fixture();
        let (created, enrolment) =
            create(&*f.store, &f.key, new_user("Alice", Role::Patient, "Patient/85"), "test").await.unwrap();
        assert!(enrolment.is_none(), "TOTP is optional for patients");
        assert_eq!(created.value.username, "alice");
        assert_eq!(created.value.patients, ["85"]);
        assert!(created.value.password_hash.starts_with("$argon2id$"));
        let policy = Policy::default();
        let outcome = check_password(&*f.store, "ALICE", "correct horse battery", &policy, at(T0)).await.unwrap();
        assert!(matches!(outcome, PasswordOutcome::SignedIn(user) if user.id == created.id));
        let wrong = check_password(&*f.store, "alice", "correct horse batterY", &policy, at(T0)).await;
        assert!(matches!(wrong, Err(AuthError::InvalidCredentials)), "{wrong:?}");
        let found = find_by_username(&*f.store, "alice").await.unwrap().unwrap();
        assert_eq!(found.value.failed_sign_ins, 1);
        let record = f.store.record("user", &created.id).await.unwrap().unwrap();
        assert!(!record.body.contains("correct horse"), "{}", record.body);
    }

    #[tokio::test]
    async fn an_unknown_user_gets_the_same_error_as_a_wrong_password() {
        let f = fixture();
        create(&*f.store, &f.key, new_user("alice", Role::Patient, "Patient/85"), "test").await.unwrap();
        let policy = Policy::default();
        let unknown = check_password(&*f.store, "mallory", "correct horse battery", &policy, at(T0)).await;
        let wrong = check_password(&*f.store, "alice", "wrong", &policy, at(T0)).await;
        let (Err(unknown), Err(wrong)) = (unknown, wrong) else { panic!("both must fail") };
        assert_eq!(unknown.to_string(), wrong.to_string());
        assert!(matches!(unknown, AuthError::InvalidCredentials));
        for bad in ["", &"x".repeat(password::MAX_LEN + 1)] {
            let refused = check_password(&*f.store, "alice", bad, &policy, at(T0)).await;
            assert!(matches!(refused, Err(AuthError::InvalidCredentials)));
        }
    }

    #[tokio::test]
    async fn five_failures_lock_the_account_until_the_lockout_ends() {
        let f = fixture();
        create(&*f.store, &f.key, new_user("bob", Role::Patient, "Patient/9"), "test").await.unwrap();
        let policy = Policy::default();
        for attempt in 0..5 {
            let now = at(T0 + attempt);
            let result = check_password(&*f.store, "bob", "guess", &policy, now).await;
            assert!(matches!(result, Err(AuthError::InvalidCredentials)), "attempt {attempt}: {result:?}");
        }
        let locked_at = at(T0 + 4);
        let until = locked_at + policy.lockout;
        for password in ["guess", "correct horse battery"] {
            let result = check_password(&*f.store, "bob", password, &policy, at(T0 + 10)).await;
            let Err(error @ AuthError::Locked { .. }) = result else { panic!("{result:?}") };
            assert!(matches!(error, AuthError::Locked { until: u } if u == until));
            let message = error.to_string();
            assert!(message.contains("locked until") && message.contains(&instant::text(&until)), "{message}");
        }
        let just_before = until - time::Duration::seconds(1);
        let result = check_password(&*f.store, "bob", "correct horse battery", &policy, just_before).await;
        assert!(matches!(result, Err(AuthError::Locked { .. })));
        let outcome = check_password(&*f.store, "bob", "correct horse battery", &policy, until).await.unwrap();
        let PasswordOutcome::SignedIn(user) = outcome else { panic!("{outcome:?}") };
        assert_eq!((user.value.failed_sign_ins, user.value.locked_until), (0, None));
        let stored = f.store.record("user", &user.id).await.unwrap().unwrap();
        assert!(!stored.body.contains("locked_until"), "cleared: {}", stored.body);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_failures_are_all_counted() {
        let f = fixture();
        let (created, _) =
            create(&*f.store, &f.key, new_user("carol", Role::Patient, "Patient/1"), "test").await.unwrap();
        let policy = Policy { max_failures: 100, ..Policy::default() };
        let attempts: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&f.store);
                tokio::spawn(async move { check_password(&*store, "carol", "nope", &policy, at(T0)).await })
            })
            .collect();
        for attempt in attempts {
            assert!(matches!(attempt.await.unwrap(), Err(AuthError::InvalidCredentials)));
        }
        let user = records::get::<User>(&*f.store, &created.id).await.unwrap().unwrap();
        assert_eq!(user.value.failed_sign_ins, 8, "no failure lost to a concurrent write");
    }

    #[tokio::test]
    async fn a_practitioner_needs_a_second_factor_that_works_once() {
        let f = fixture();
        let (created, enrolment) =
            create(&*f.store, &f.key, new_user("drhouse", Role::Practitioner, "Practitioner/12"), "test")
                .await
                .unwrap();
        let enrolment = enrolment.expect("TOTP is required for practitioners");
        assert!(created.value.patients.is_empty());
        let app = Authenticator::from_base32(&enrolment.secret).unwrap();
        let policy = Policy::default();
        let now = at(T0);
        let outcome = check_password(&*f.store, "drhouse", "correct horse battery", &policy, now).await.unwrap();
        assert!(matches!(outcome, PasswordOutcome::NeedsSecondFactor(_)));
        let code = app.code_at(now);
        let user = check_second_factor(&*f.store, &f.key, "drhouse", &code, &policy, now).await.unwrap();
        assert_eq!(user.value.totp.as_ref().and_then(|state| state.last_step), Some(T0 as u64 / 30));
        let replay = check_second_factor(&*f.store, &f.key, "drhouse", &code, &policy, now).await;
        assert!(matches!(replay, Err(AuthError::InvalidSecondFactor)), "{replay:?}");
        let next = app.code_at(at(T0 + 30));
        assert!(check_second_factor(&*f.store, &f.key, "drhouse", &next, &policy, at(T0 + 30)).await.is_ok());
        let too_late = app.code_at(at(T0 + 30));
        let result = check_second_factor(&*f.store, &f.key, "drhouse", &too_late, &policy, at(T0 + 120)).await;
        assert!(matches!(result, Err(AuthError::InvalidSecondFactor)));
        let record = f.store.record("user", &created.id).await.unwrap().unwrap();
        assert!(!record.body.contains(&enrolment.secret), "the seed is sealed: {}", record.body);
        for code in &enrolment.recovery_codes {
            assert!(!record.body.contains(code.as_str()));
        }
    }

    #[tokio::test]
    async fn a_recovery_code_signs_in_once() {
        let f = fixture();
        let (_, enrolment) =
            create(&*f.store, &f.key, new_user("root", Role::Operator, "Person/1"), "test").await.unwrap();
        let code = enrolment.unwrap().recovery_codes[0].clone();
        let policy = Policy::default();
        let user = check_second_factor(&*f.store, &f.key, "root", &code, &policy, at(T0)).await.unwrap();
        assert_eq!(user.value.totp.as_ref().map(|state| state.recovery_codes.len()), Some(9));
        let again = check_second_factor(&*f.store, &f.key, "root", &code, &policy, at(T0)).await;
        assert!(matches!(again, Err(AuthError::InvalidSecondFactor)));
        let wrong_key = SecretKey::generate().unwrap();
        let refused = check_second_factor(&*f.store, &wrong_key, "root", "123456", &policy, at(T0)).await;
        assert!(matches!(refused, Err(AuthError::Secret(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn wrong_codes_count_towards_the_lockout() {
        let f = fixture();
        let (_, enrolment) =
            create(&*f.store, &f.key, new_user("nurse", Role::Practitioner, "Practitioner/3"), "test").await.unwrap();
        let app = Authenticator::from_base32(&enrolment.unwrap().secret).unwrap();
        let policy = Policy { max_failures: 3, ..Policy::default() };
        let good = app.code_at(at(T0));
        let bad = if good == "000000" { "111111" } else { "000000" };
        for _ in 0..3 {
            let result = check_second_factor(&*f.store, &f.key, "nurse", bad, &policy, at(T0)).await;
            assert!(matches!(result, Err(AuthError::InvalidSecondFactor)));
        }
        let result = check_second_factor(&*f.store, &f.key, "nurse", &good, &policy, at(T0)).await;
        assert!(matches!(result, Err(AuthError::Locked { .. })), "{result:?}");
        let result = check_password(&*f.store, "nurse", "correct horse battery", &policy, at(T0)).await;
        assert!(matches!(result, Err(AuthError::Locked { .. })));
    }

    #[tokio::test]
    async fn a_patient_may_choose_totp_and_act_for_several_patients() {
        let f = fixture();
        let parent = NewUser {
            patients: vec!["86".into(), "85".into(), "87".into()],
            enrol_totp: true,
            ..new_user("parent", Role::Patient, "Patient/85")
        };
        let (created, enrolment) = create(&*f.store, &f.key, parent, "test").await.unwrap();
        assert!(enrolment.is_some());
        assert_eq!(created.value.patients, ["85", "86", "87"]);
        let related = NewUser { patients: vec!["85".into()], ..new_user("mum", Role::Patient, "RelatedPerson/4") };
        assert_eq!(create(&*f.store, &f.key, related, "test").await.unwrap().0.value.patients, ["85"]);
        let by_fhir_user = records::find::<User>(&*f.store, "fhir_user", "Patient/85").await.unwrap();
        assert_eq!(by_fhir_user.len(), 1);
    }

    #[tokio::test]
    async fn invalid_users_are_refused_with_the_reason() {
        let f = fixture();
        let cases = [
            (new_user("", Role::Patient, "Patient/1"), "username"),
            (new_user("a:b", Role::Patient, "Patient/1"), "username"),
            (new_user("x", Role::Patient, "Patient"), "Type/id"),
            (new_user("x", Role::Patient, "Observation/1"), "Type/id"),
            (new_user("x", Role::Patient, "Patient/a b"), "Type/id"),
            (new_user("x", Role::Practitioner, "Patient/1"), "Practitioner"),
            (new_user("x", Role::Patient, "Person/1"), "Patient ids"),
            (NewUser { patients: vec!["1".into()], ..new_user("x", Role::Practitioner, "Practitioner/1") }, "only"),
            (NewUser { password: String::new(), ..new_user("x", Role::Patient, "Patient/1") }, "empty"),
            (NewUser { password: "p".repeat(1025), ..new_user("x", Role::Patient, "Patient/1") }, "longer"),
        ];
        for (user, expected) in cases {
            let shown = format!("{user:?}");
            assert!(!shown.contains("correct horse"), "{shown}");
            let error = create(&*f.store, &f.key, user, "test").await.unwrap_err();
            assert!(error.to_string().contains(expected), "{shown}: {error}");
        }
    }

    #[tokio::test]
    async fn a_taken_username_is_refused_by_name() {
        let f = fixture();
        create(&*f.store, &f.key, new_user("alice", Role::Patient, "Patient/1"), "test").await.unwrap();
        let error = create(&*f.store, &f.key, new_user("Alice", Role::Patient, "Patient/2"), "test").await.unwrap_err();
        assert!(matches!(&error, AuthError::UsernameTaken(name) if name == "alice"), "{error}");
        assert_eq!(error.to_string(), "a user named 'alice' already exists");
    }
}
