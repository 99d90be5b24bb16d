DROP TABLE sessions;
DROP TABLE password_credentials;
DROP TABLE messages;
DROP TABLE conversations;
DROP TABLE users;
DROP TABLE events;
