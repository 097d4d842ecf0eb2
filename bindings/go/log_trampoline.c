// The C side of the log callback: forwards to the exported Go function (cgo cannot take
// the address of a Go function with a const parameter directly).
#include "_cgo_export.h"

void fo_go_log(void *user_data, int level, const char *message) {
  goLogTrampoline(user_data, level, (char *)message);
}
