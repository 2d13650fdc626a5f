"""Tools a user runs on their own things, beside the library the apps import."""
