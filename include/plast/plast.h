/* plast/plast.h - everything: include this or the one header you need. */
#ifndef PLAST_PLAST_H
#define PLAST_PLAST_H

#include "auxnet.h"
#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "err.h"
#include "fpenv.h"
#include "gemm.h"
#include "igemm.h"
#include "layer.h"
#include "local.h"
#include "loss.h"
#include "mem.h"
#include "model.h"
#include "optim.h"
#include "plugin.h"
#include "proj.h"
#include "qmodel.h"
#include "quant.h"
#include "rng.h"
#include "rnn.h"
#include "rule.h"
#include "tensor.h"
#include "train.h"
#include "zo.h"
#include "zo_whiten.h"

#define PLAST_VERSION_STRING "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the library at run time ("0.1.0"). */
const char *plast_version(void);

#ifdef __cplusplus
}
#endif
#endif
