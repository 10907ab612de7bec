//! The conformance suite on the in-memory backend.

use std::sync::Arc;

use chat_server::store::MemoryStore;
use chat_server::store::conformance::Subject;

chat_server::store_conformance!(async { Subject::new(Arc::new(MemoryStore::new())) });
