/*
 * mamba_wgpu.h: the C API of mamba-wgpu, which runs Mamba language models on any GPU through
 * wgpu (Vulkan, Metal, DX12).
 *
 * Link with the shared library (libmamba_wgpu.so, libmamba_wgpu.dylib, mamba_wgpu.dll) or the
 * static one (libmamba_wgpu.a, mamba_wgpu.lib), both built by `cargo build --release` into
 * target/release/. The static one also needs the system libraries Rust's standard library
 * and wgpu use: on Linux `-lpthread -ldl -lm`; elsewhere
 * `cargo rustc --release --lib --crate-type staticlib -- --print native-static-libs` lists them.
 * examples/c/README.md shows both.
 *
 * A minimal program (error checks left out; see examples/c/generate.c):
 *
 *     mw_context *ctx;  mw_model *model;  mw_session *session;
 *     mw_context_new(NULL, &ctx);
 *     mw_model_load(ctx, "models/shakespeare-mamba", NULL, &model);
 *     mw_session_new(model, &session);
 *     mw_sampling_options opts;
 *     mw_sampling_defaults(&opts);
 *     opts.max_tokens = 50;
 *     mw_generate(session, "ROMEO:", &opts, print_piece, NULL, NULL);
 *     mw_session_free(session);  mw_model_free(model);  mw_context_free(ctx);
 *
 * CONVENTIONS
 *
 * Status. Every function returns an mw_status (MW_OK is 0), except mw_last_error,
 * mw_status_string, mw_version (static or thread-local strings) and the *_free functions
 * (void). After a failure, mw_last_error() returns a message that names what was at fault (a
 * path, an argument); it is thread-local and valid until the next mw_* call on that thread.
 * Every call clears it first, so after MW_OK it is "".
 *
 * Handles. mw_context, mw_model and mw_session are opaque handles the library allocates;
 * free each with its *_free function (NULL is allowed and does nothing). Freeing is by
 * reference: a model keeps its context alive, a session keeps its model alive, so they may be
 * freed in any order. A NULL handle, or one of another kind, is an error
 * (MW_ERR_NULL_POINTER, MW_ERR_INVALID_ARGUMENT), not a crash; a freed handle is usually
 * detected too, but using one is a bug.
 *
 * Pointers. A NULL where a value is required gives MW_ERR_NULL_POINTER; strings are
 * NUL-terminated UTF-8 (else MW_ERR_INVALID_UTF8). Parameters documented as "may be NULL" are
 * optional. The library never keeps a caller's pointer after a call returns (strings are
 * copied), except the user_data it passes back to a callback during that call.
 *
 * Buffers. Functions that return variable-sized data (mw_tokenize, mw_detokenize,
 * mw_chat_render, mw_session_snapshot, mw_adapter_list) write into a caller-owned buffer and always store
 * the size at their length argument. Passing a NULL buffer only asks for the size (MW_OK);
 * a buffer that is too small gives MW_ERR_BUFFER_TOO_SMALL and nothing is written to it.
 * Text buffers need one byte more than the length, for the terminating NUL.
 *
 * Panics. No panic crosses into C: an internal error is returned as MW_ERR_INTERNAL (free the
 * handle it happened on). The library prints nothing on success; Rust's panic message may
 * appear on stderr in that case.
 *
 * Threads. Every function may be called from any thread, and every handle may move between
 * threads. A context and a model may be used by several threads at once (loading models on
 * one context, opening sessions of one model and tokenizing with it concurrently). A session
 * takes one call at a time: a second call on the same session while one runs (from another
 * thread, or from inside its own generation callback) fails with MW_ERR_BUSY. Give each
 * thread its own session. Calls block until the GPU work is done.
 *
 * Not supported yet: sessions of more than one sequence
 * (the Rust API has batches; a C session is batch 1), downloading models (load a folder, or
 * a repo id already in the local Hugging Face cache, e.g. fetched with
 * `huggingface-cli download OWNER/NAME`).
 */
#ifndef MAMBA_WGPU_H
#define MAMBA_WGPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------- */
/* Status and errors                                                                         */
/* ---------------------------------------------------------------------------------------- */

typedef enum mw_status {
    MW_OK = 0,
    MW_ERR_NULL_POINTER = 1,     /* a required pointer or callback is NULL */
    MW_ERR_INVALID_UTF8 = 2,     /* a string is not valid UTF-8 */
    MW_ERR_INVALID_ARGUMENT = 3, /* a value out of range, an id outside the vocabulary, a bad handle */
    MW_ERR_BUFFER_TOO_SMALL = 4, /* the needed size was stored; nothing else was written */
    MW_ERR_IO = 5,               /* a file or folder is missing or unreadable */
    MW_ERR_MODEL = 6,            /* config.json, the safetensors files or a tensor are wrong */
    MW_ERR_UNSUPPORTED = 7,      /* something this version does not do */
    MW_ERR_TOKENIZER = 8,        /* no tokenizer, a bad tokenizer.json, or one of another model */
    MW_ERR_SNAPSHOT = 9,         /* a snapshot of another model, or damaged bytes */
    MW_ERR_NO_ADAPTER = 10,      /* no GPU adapter (or none matching the name given) */
    MW_ERR_GPU = 11,             /* a device limit, out of GPU memory, a lost device */
    MW_ERR_BUSY = 12,            /* the session is in use by another call */
    MW_ERR_INTERNAL = 13         /* a bug in the library (a caught panic) */
} mw_status;

/* The message of the last mw_* call on this thread: "" when it succeeded. Never NULL.
 * Thread-local: any thread reads its own; valid until the next mw_* call on this thread (copy
 * it to keep it). */
const char *mw_last_error(void);

/* A short static description of a status code ("unknown status" for other values). Any
 * thread. */
const char *mw_status_string(int32_t status);

/* The library's version, e.g. "0.1.0". Static. Any thread. */
const char *mw_version(void);

/* ---------------------------------------------------------------------------------------- */
/* GPU context                                                                               */
/* ---------------------------------------------------------------------------------------- */

typedef struct mw_context mw_context;

/* Opens a GPU device. adapter: NULL for the adapter wgpu prefers (a discrete GPU first), or,
 * like the CLI's --adapter, a number in mw_adapter_list's list or text its line contains
 * (case-insensitive: "nvidia", "vulkan", "llvmpipe"). On success *out receives a context the
 * caller owns (free with mw_context_free); on failure *out is set to NULL.
 * Any thread. */
mw_status mw_context_new(const char *adapter, mw_context **out);

/* The adapter's description, "name (Backend, DeviceType)". *name points into the context
 * handle and stays valid until mw_context_free(ctx). Any thread. */
mw_status mw_context_adapter(const mw_context *ctx, const char **name);

/* Every adapter wgpu can see, one "i: name (Backend, DeviceType)" line each, as text in buf
 * (NUL-terminated). *len receives the length without the NUL; buf may be NULL to ask for it
 * (see Buffers above). Any thread. */
mw_status mw_adapter_list(char *buf, size_t capacity, size_t *len);

/* Releases the caller's reference to the context. NULL does nothing. Any thread, once no
 * other call uses this handle. */
void mw_context_free(mw_context *ctx);

/* ---------------------------------------------------------------------------------------- */
/* Models                                                                                    */
/* ---------------------------------------------------------------------------------------- */

typedef struct mw_model mw_model;

/* An end-of-sequence id that does not exist. */
#define MW_NO_TOKEN 0xFFFFFFFFu

typedef enum mw_weight_dtype {
    MW_DTYPE_AUTO = 0, /* the checkpoint's precision: f32 stays f32, f16 stays f16, bf16 becomes f16 */
    MW_DTYPE_F32 = 1,
    MW_DTYPE_F16 = 2
} mw_weight_dtype;

typedef struct mw_load_options {
    /* A tokenizer.json to use instead of the model folder's. NULL (the default): the folder's
     * tokenizer.json, or no tokenizer when there is none (then work with token ids). Copied. */
    const char *tokenizer_path;
    /* An mw_weight_dtype value. Default MW_DTYPE_AUTO. */
    int32_t weight_dtype;
    /* A tokenizer_config.json whose chat template (mw_chat_render) to use instead of the model
     * folder's. NULL (the default): the folder's tokenizer_config.json, or the plain transcript
     * when there is none or it has no chat_template. Copied. */
    const char *tokenizer_config_path;
} mw_load_options;

/* Fills *options with the defaults above. Any thread. */
mw_status mw_load_defaults(mw_load_options *options);

/* Loads a model onto ctx's GPU. model names:
 *   - a folder with config.json and model.safetensors (or shards with
 *     model.safetensors.index.json, or pytorch_model.bin), F32/F16/BF16: Mamba-1,
 *     FalconMamba and Mamba-2 checkpoints;
 *   - or a Hugging Face repo id (OWNER/NAME) found in the local Hugging Face cache
 *     ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub); nothing is downloaded;
 *   - or a GGUF file (llama.cpp's format, arch mamba or mamba2; F32/F16/BF16, Q8_0, Q4_0,
 *     Q4_K, Q5_K, Q6_K tensors) with the tokenizer and chat template it embeds; a tokenizer
 *     that cannot be built (not byte-level BPE) leaves the model to token ids.
 * The chat template for mw_chat_render comes from tokenizer_config.json in the folder (or
 * options->tokenizer_config_path): one that is not JSON or does not compile is MW_ERR_MODEL,
 * naming the file. options may be NULL
 * (the defaults). Errors name the path at fault (mw_last_error). On success *out receives a model the caller
 * owns (free with mw_model_free); on failure *out is set to NULL. Blocks while the weights
 * upload. Any thread; several loads may run at once on one context. */
mw_status mw_model_load(const mw_context *ctx, const char *model, const mw_load_options *options, mw_model **out);

typedef struct mw_model_info {
    uint64_t vocab_size;   /* logits per position (may exceed the tokenizer's size: padding) */
    uint64_t n_layer;
    uint64_t d_model;
    uint64_t weight_bytes; /* GPU memory the weights occupy */
    uint32_t eos_id;       /* the first end-of-sequence id (config.json's, else the tokenizer's), or MW_NO_TOKEN */
    int32_t has_tokenizer; /* 1 when text can be tokenized (mw_tokenize, mw_generate), else 0 */
    int32_t has_chat_template; /* 1 when mw_chat_render uses the model's own template
                                * (tokenizer_config.json's), 0 for the plain transcript */
} mw_model_info;

/* Fills *info. Any thread, concurrently with other calls on the model. */
mw_status mw_model_get_info(const mw_model *model, mw_model_info *info);

/* The token ids of text (no special tokens added: the text is fed as written). *n_ids
 * receives the count; ids may be NULL to ask for it (see Buffers above). Needs a tokenizer
 * (else MW_ERR_TOKENIZER). Any thread, concurrently with other calls on the model. */
mw_status mw_tokenize(const mw_model *model, const char *text, uint32_t *ids, size_t capacity, size_t *n_ids);

/* The text of n_ids token ids, NUL-terminated in text (special tokens such as EOS are
 * skipped; invalid UTF-8 becomes U+FFFD). *text_len receives the length without the NUL;
 * text may be NULL to ask for it (see Buffers above). ids may be NULL when n_ids is 0. An id
 * outside the tokenizer is MW_ERR_INVALID_ARGUMENT. Any thread, concurrently with other calls
 * on the model. */
mw_status mw_detokenize(const mw_model *model, const uint32_t *ids, size_t n_ids, char *text, size_t capacity, size_t *text_len);

/* Releases the caller's reference; the model's sessions keep it alive. NULL does nothing.
 * Any thread, once no other call uses this handle. */
void mw_model_free(mw_model *model);

/* ---------------------------------------------------------------------------------------- */
/* Chat                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* One message of a conversation: role is "system", "user" or "assistant" (a template may
 * accept others); both strings NUL-terminated UTF-8. */
typedef struct mw_chat_message {
    const char *role;
    const char *content;
} mw_chat_message;

/* The prompt for n_messages messages, rendered as the CLI's chat and server render them: with
 * the model's chat template (tokenizer_config.json's chat_template, a Jinja template rendered
 * as transformers' apply_chat_template does, with messages, add_generation_prompt, bos_token
 * and eos_token), or, for a model without one, the plain transcript (each message's content
 * followed by a blank line, "

"; the roles are not written). A nonzero
 * add_generation_prompt appends what opens the assistant's reply (nothing in the plain
 * transcript). The text is NUL-terminated in text; *text_len receives its length without the
 * NUL; text may be NULL to ask for it (see Buffers above). messages may be NULL when
 * n_messages is 0. A NULL role or content is MW_ERR_NULL_POINTER naming it (e.g.
 * "messages[1].content"); a template that rejects the messages (raise_exception) or fails
 * gives MW_ERR_INVALID_ARGUMENT with its message. Pass the prompt to mw_generate on a fresh
 * or reset session; it needs no tokenizer itself. Any thread, concurrently with other calls
 * on the model. */
mw_status mw_chat_render(const mw_model *model, const mw_chat_message *messages, size_t n_messages, int32_t add_generation_prompt, char *text,
                         size_t capacity, size_t *text_len);

/* ---------------------------------------------------------------------------------------- */
/* Sessions: one sequence's recurrent state                                                  */
/* ---------------------------------------------------------------------------------------- */

typedef struct mw_session mw_session;

/* Opens a session of one sequence (batch 1) on model, with its own GPU state and scratch
 * buffers. On success *out receives a session the caller owns (free with mw_session_free);
 * on failure *out is set to NULL. Any thread. */
mw_status mw_session_new(const mw_model *model, mw_session **out);

/* Zeroes the state: the next call starts a new sequence. One call at a time per session. */
mw_status mw_session_reset(mw_session *session);

/* *position receives how many tokens the state holds: those fed since creation or the last
 * reset (a restored snapshot brings its own count; after mw_generate the count includes every
 * token passed on). One call at a time per session. */
mw_status mw_session_position(mw_session *session, uint64_t *position);

/* Feeds n_ids (>= 1) token ids to the model. logits: NULL to read nothing back (fastest), or
 * room for logits_len >= vocab_size floats (mw_model_info), which receive the logits of the
 * position after the last id. One call at a time per session. */
mw_status mw_session_prefill(mw_session *session, const uint32_t *ids, size_t n_ids, float *logits, size_t logits_len);

/* Feeds n_ids (>= 1) token ids; *next_id receives the most likely next token (argmax on the
 * GPU: 4 bytes read back). One call at a time per session. */
mw_status mw_session_prefill_greedy(mw_session *session, const uint32_t *ids, size_t n_ids, uint32_t *next_id);

/* Feeds one token id; logits as for mw_session_prefill. One call at a time per session. */
mw_status mw_session_step(mw_session *session, uint32_t id, float *logits, size_t logits_len);

/* Feeds one token id; *next_id receives the most likely next token. One call at a time per
 * session. */
mw_status mw_session_step_greedy(mw_session *session, uint32_t id, uint32_t *next_id);

/* Copies the state (Mamba's whole "prompt cache": a fixed size per model, independent of
 * the length of the text) into buf, to restore later into a session of the same model.
 * *len receives the size; buf may be NULL to ask for it (see Buffers above). The bytes
 * belong to the caller. One call at a time per session. */
mw_status mw_session_snapshot(mw_session *session, uint8_t *buf, size_t capacity, size_t *len);

/* Replaces the state with len bytes from mw_session_snapshot. Bytes of another model, or
 * damaged ones, give MW_ERR_SNAPSHOT and leave the state as it was. The repetition penalty
 * of the next generation does not see the tokens before the snapshot. One call at a time
 * per session. */
mw_status mw_session_restore(mw_session *session, const uint8_t *bytes, size_t len);

/* Frees the session and its GPU buffers. NULL does nothing. Any thread, once no other call
 * uses this handle (a session freed from inside its own callback is left alone: that is
 * reported in mw_last_error). */
void mw_session_free(mw_session *session);

/* ---------------------------------------------------------------------------------------- */
/* Generation                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* Sampling and stop conditions. Fill with mw_sampling_defaults, then change fields. Sampling
 * applies, in order: repetition penalty, top-k, temperature, softmax, top-p, min-p. */
typedef struct mw_sampling_options {
    float temperature;            /* >= 0; 0 picks the most likely token (greedy). Default 1 */
    uint32_t top_k;               /* keep the k most likely tokens; 0 disables. Default 0 */
    float top_p;                  /* nucleus: in (0, 1]; 1 disables. Default 1 */
    float min_p;                  /* drop tokens below min_p x the top probability; in [0, 1]; 0 disables. Default 0 */
    float repetition_penalty;     /* > 0; for tokens in the last repetition_window ones; 1 disables. Default 1 */
    uint32_t repetition_window;   /* at most 1024; default 64 */
    uint64_t seed;                /* the same seed, prompt and options give the same text. Default 0 */
    uint32_t max_tokens;          /* most new tokens; 0 only feeds the prompt. Default 200 */
    const char *const *stop_strings; /* n_stop_strings non-empty strings that end generation when
                                      * the text contains one (it is not passed on). Copied.
                                      * Default NULL */
    size_t n_stop_strings;        /* default 0 */
} mw_sampling_options;

/* Fills *options with the defaults above: plain sampling from the model's distribution
 * (every filter off), 200 tokens, no stop strings. For argmax decoding, as the CLI's
 * `generate --greedy`, set temperature 0 (and leave the filters off). Any thread. */
mw_status mw_sampling_defaults(mw_sampling_options *options);

typedef enum mw_finish_reason {
    MW_FINISH_NONE = 0,        /* (a failed call) */
    MW_FINISH_EOS = 1,         /* the model chose an end-of-sequence id (not passed on) */
    MW_FINISH_MAX_TOKENS = 2,
    MW_FINISH_STOP_STRING = 3,
    MW_FINISH_CALLBACK = 4     /* the callback returned nonzero */
} mw_finish_reason;

typedef struct mw_generate_result {
    uint64_t prompt_tokens;    /* ids fed before the first new one */
    uint64_t generated_tokens; /* new ids passed on (EOS not counted) */
    double prefill_seconds;    /* the prompt, and choosing the first token */
    double decode_seconds;     /* the one-token steps */
    int32_t finish_reason;     /* an mw_finish_reason value */
} mw_generate_result;

/* Receives each new piece of text: len bytes of UTF-8 (never half a character, never part of
 * a stop string), NUL-terminated as well; valid only during the call. Return 0 to go on,
 * nonzero to stop (the call then returns MW_OK with MW_FINISH_CALLBACK). The callback runs
 * on the thread that called mw_generate; it must not unwind (C++ exceptions, longjmp) and
 * must not call functions on the same session (MW_ERR_BUSY). */
typedef int32_t (*mw_text_fn)(const char *text, size_t len, void *user_data);

/* Receives each new token id; return 0 to go on, nonzero to stop. As mw_text_fn otherwise. */
typedef int32_t (*mw_token_fn)(uint32_t id, void *user_data);

/* Tokenizes prompt, feeds it and generates text, passing each new piece to on_text (with
 * user_data) until the model's end-of-sequence id, max_tokens, a stop string or the
 * callback's stop. The session continues from its state: the prompt follows whatever it
 * holds (an earlier generation, a restored snapshot), and after the call the state continues
 * the text passed on (the last token is fed at the start of the session's next call), so
 * calling mw_generate again continues a conversation. options may be NULL (the defaults);
 * result may be NULL, else it receives the counts (zeroed on failure). A prompt that
 * tokenizes to nothing is an error on a fresh session. Needs a tokenizer. Bad options give
 * MW_ERR_INVALID_ARGUMENT naming the field. One call at a time per session. */
mw_status mw_generate(mw_session *session, const char *prompt, const mw_sampling_options *options, mw_text_fn on_text, void *user_data,
                      mw_generate_result *result);

/* mw_generate on token ids: feeds n_prompt ids and passes each new id to on_token. Needs no
 * tokenizer; options must have no stop strings. Stops at the model's end-of-sequence ids
 * like mw_generate. One call at a time per session. */
mw_status mw_generate_tokens(mw_session *session, const uint32_t *prompt, size_t n_prompt, const mw_sampling_options *options,
                             mw_token_fn on_token, void *user_data, mw_generate_result *result);

#ifdef __cplusplus
}
#endif

#endif /* MAMBA_WGPU_H */
