module procspy

go 1.18
