/* handlers_index.c - being written */
#include "config.h"
