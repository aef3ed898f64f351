//! A job abandoned by a dead process is finished by another: the state a crash leaves behind
//! (the job running, its last committed position, the files committed so far, a half-written
//! next file, and the dead process's lease) is rebuilt from a finished job's own record
//! history, and a fresh runner — a restarted server — must produce the same export.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use export::{ExportJob, Exports, Level, Settings, State};
use fhir::id::ResourceType;
use serde_json::json;
use store::records::{self, Kind};
use store::{Environment, Store};

async fn store_with_data(folder: &std::path::Path) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(store::sqlite::SqliteStore::open(&folder.join("db")).expect("store"));
    let patient = ResourceType::parse("Patient").expect("type");
    let observation = ResourceType::parse("Observation").expect("type");
    for index in 0..25 {
        let body = json!({"resourceType": "Patient", "name": [{"family": format!("P{index}")}]});
        let created = store.create(Environment::Production, &patient, body, None).await.expect("create");
        let body = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": format!("Patient/{}", created.resource.id)}});
        store.create(Environment::Production, &observation, body, None).await.expect("create");
    }
    store
}

fn job() -> ExportJob {
    let types = vec!["Patient".into(), "Observation".into()];
    ExportJob::queued(Environment::Production, "test", "http://localhost/fhir/$export".into(), Level::System, types)
}

/// Pages of 10 resources, a file per page.
fn settings(root: &std::path::Path) -> Settings {
    let mut settings = Settings::new(export::Location::Folder(root.to_path_buf()));
    settings.page = 10;
    settings.max_file_bytes = 1;
    settings.lease = Duration::from_secs(60);
    settings
}

/// Every line of a finished job's files, by type, sorted.
fn lines(root: &std::path::Path, id: &str, job: &ExportJob) -> BTreeMap<String, Vec<String>> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for output in &job.outputs {
        let text = std::fs::read_to_string(root.join(id).join(&output.name)).expect("file");
        assert_eq!(text.lines().count() as u64, output.count);
        found.entry(output.resource_type.clone()).or_default().extend(text.lines().map(str::to_owned));
    }
    found.values_mut().for_each(|lines| lines.sort());
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_left_by_a_dead_process_is_finished_from_its_last_committed_file() {
    let folder = tempfile::tempdir().expect("temp dir");
    let root = folder.path().join("exports");
    let store = store_with_data(folder.path()).await;

    // The whole export, as one process runs it.
    let exports = Exports::new(Arc::clone(&store), settings(&root)).expect("exports");
    let original = exports.start(&job(), "test").await.expect("start");
    exports.work().await.expect("work");
    let finished = exports.get(&original).await.expect("get").expect("job").value;
    assert_eq!(finished.state, State::Complete);
    assert_eq!(finished.exported, 50);
    assert_eq!(finished.outputs.len(), 6, "3 files of Patients, 3 of Observations");
    let expected = lines(&root, &original, &finished);
    assert_eq!(expected["Patient"].len(), 25);
    assert_eq!(expected["Observation"].len(), 25);

    // What a crash after the fourth committed file leaves: the job running at that
    // position, its four files, a half-written fifth, and the dead process's lease.
    let history = store.record_history(ExportJob::KIND, &original).await.expect("history");
    let after_four = history
        .iter()
        .map(|record| serde_json::from_str::<ExportJob>(&record.body).expect("job"))
        .find(|job| job.outputs.len() == 4 && job.state == State::Running)
        .expect("the version after the fourth file");
    assert_eq!(after_four.types[after_four.position.pass], "Observation", "mid-way through the second type");
    assert!(after_four.position.cursor.is_some(), "mid-way through its pages");
    let abandoned = "abandoned";
    records::create(store.as_ref(), abandoned, &after_four, "test").await.expect("create");
    std::fs::create_dir_all(root.join(abandoned)).expect("folder");
    for output in &after_four.outputs {
        std::fs::copy(root.join(&original).join(&output.name), root.join(abandoned).join(&output.name)).expect("copy");
    }
    let next = format!("Observation-{}.ndjson", after_four.position.file);
    std::fs::write(root.join(abandoned).join(&next), "{\"resourceType\":\"Observation\",\"id\":\"half").expect("write");
    let now = time::OffsetDateTime::now_utc();
    let lease = "export:abandoned";
    assert!(store.claim(lease, "dead", now + time::Duration::seconds(60), now).await.expect("claim"));

    // While the dead process's lease lasts, a restarted server leaves the job alone...
    let restarted = Exports::new(Arc::clone(&store), settings(&root)).expect("exports");
    restarted.work().await.expect("work");
    assert_eq!(restarted.get(abandoned).await.expect("get").expect("job").value.state, State::Running);

    // ...and once its expiry has passed, takes it over and finishes it: the same
    // resources, each once, the half-written file replaced.
    let past = now - time::Duration::seconds(1);
    assert!(store.claim(lease, "dead", past, now).await.expect("claim"), "the dead lease, expired");
    restarted.work().await.expect("work");
    let resumed = restarted.get(abandoned).await.expect("get").expect("job").value;
    assert_eq!(resumed.state, State::Complete);
    assert_eq!(resumed.exported, 50);
    assert_eq!(resumed.outputs.len(), 6);
    assert_eq!(lines(&root, abandoned, &resumed), expected);
}
