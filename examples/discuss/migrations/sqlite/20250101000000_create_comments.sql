-- The seed's `comments` table (`mix ecto.gen.migration create_comment`):
-- `belongs_to :user`, `belongs_to :topic`, `timestamps()`. A user is the
-- socket's `user_id` parameter (none when it gave none) and a topic the
-- digits of `comments:N` (any length): both are text, with no table of
-- their own. AUTOINCREMENT: ids only grow, so they are a paging cursor.
CREATE TABLE comments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    content TEXT NOT NULL,
    user_id TEXT,
    topic_id TEXT NOT NULL,
    inserted_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- A topic's newest comments (a join's replay, a page, pruning).
CREATE INDEX comments_topic_id_id_index ON comments (topic_id, id);
