//! `ignis reindex`: recomputes the search index rows of every resource, in batches, with a
//! progress bar. Needed after a custom `SearchParameter` is added, for the resources written
//! before it.

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ReindexArgs;
use crate::serve::open_store;

pub(crate) async fn run(args: ReindexArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let total = store.count_resources().await?;
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} resources, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let batch_size = args.batch_size.max(1);
    let mut position = 0;
    while let Some(last) = store.reindex(position, batch_size).await? {
        position = last;
        progress.set_position((progress.position() + batch_size as u64).min(total));
    }
    progress.finish_and_clear();
    eprintln!("reindexed {total} resources");
    Ok(())
}
