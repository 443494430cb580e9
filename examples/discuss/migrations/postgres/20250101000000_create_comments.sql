-- The seed's `comments` table (`mix ecto.gen.migration create_comment`):
-- `belongs_to :user`, `belongs_to :topic`, `timestamps()` (Ecto's
-- `timestamp(0) without time zone`, in UTC). A user is the socket's
-- `user_id` parameter (none when it gave none) and a topic the digits of
-- `comments:N` (any length): both are text, with no table of their own.
CREATE TABLE comments (
    id BIGSERIAL PRIMARY KEY,
    content TEXT NOT NULL,
    user_id TEXT,
    topic_id TEXT NOT NULL,
    inserted_at TIMESTAMP(0) NOT NULL,
    updated_at TIMESTAMP(0) NOT NULL
);

-- A topic's newest comments (a join's replay, a page, pruning).
CREATE INDEX comments_topic_id_id_index ON comments (topic_id, id);
