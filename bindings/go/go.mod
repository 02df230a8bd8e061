module libprocspy/procspy

go 1.18
