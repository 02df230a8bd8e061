/* The command's JSON string encoder (json.c). */
#ifndef PROCSPY_CLI_JSON_H
#define PROCSPY_CLI_JSON_H

#include <stddef.h>

/* Writes the bytes str[0..len) to stdout as one JSON string, quotes included. */
void put_json_string(const char *str, size_t len);

#endif
