/*
 * The C API exercised from C: error paths (NULL pointers, invalid UTF-8, handles of the wrong
 * kind, bad paths, bad options), buffers and size queries, tokenizing, prefill and steps
 * against generation, snapshots, continuing a generation, callbacks that stop or re-enter,
 * stop strings, chat templates, a model without a tokenizer and sessions on two threads.
 * tests/c_api.rs builds and runs it:
 *
 *     api_checks MODEL_WITH_TOKENIZER MODEL_WITHOUT_TOKENIZER CHATML_MODEL BROKEN_TEMPLATE_MODEL
 *
 * MODEL_WITH_TOKENIZER has no tokenizer_config.json (the plain transcript); CHATML_MODEL has
 * one with a ChatML template, and beside it raising.json (a template that raises "Conversation
 * roles must alternate") and broken.json (one that does not compile); BROKEN_TEMPLATE_MODEL's
 * tokenizer_config.json does not compile.
 *
 * Prints "ok: N checks" and exits 0, or names the first failed check and exits 1.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mamba_wgpu.h"

static int checks = 0;

#define CHECK(cond)                                                                                              \
    do {                                                                                                         \
        checks++;                                                                                                \
        if (!(cond)) {                                                                                           \
            fprintf(stderr, "api_checks.c:%d: check failed: %s (last error: %s)\n", __LINE__, #cond, mw_last_error()); \
            exit(1);                                                                                             \
        }                                                                                                        \
    } while (0)

/* A call that must return `expected`, with a message containing `needle` (NULL: any). */
#define EXPECT(call, expected, needle)                                                                            \
    do {                                                                                                          \
        mw_status got_ = (call);                                                                                  \
        checks++;                                                                                                 \
        if (got_ != (expected) || ((needle) != NULL && strstr(mw_last_error(), (needle) ? (needle) : "") == NULL)) { \
            fprintf(stderr, "api_checks.c:%d: %s returned %d (%s), expected %d with a message containing \"%s\"\n", \
                    __LINE__, #call, (int)got_, mw_last_error(), (int)(expected), (needle) ? (needle) : "");         \
            exit(1);                                                                                              \
        }                                                                                                         \
    } while (0)

#define OK(call) EXPECT(call, MW_OK, NULL)

/* Text collected by a callback. */
struct text {
    char buf[4096];
    size_t len;
    int calls;
    int stop_after;        /* return nonzero on this call (1-based); 0: never */
    mw_session *reenter;   /* call mw_session_position on it from inside the callback */
    mw_status reentered;
};

static int32_t collect(const char *piece, size_t len, void *user_data) {
    struct text *t = user_data;
    if (t->len + len >= sizeof t->buf || piece[len] != '\0' || len == 0) {
        return 1;
    }
    memcpy(t->buf + t->len, piece, len);
    t->len += len;
    t->buf[t->len] = '\0';
    t->calls++;
    if (t->reenter != NULL) {
        uint64_t position;
        t->reentered = mw_session_position(t->reenter, &position);
        return 1;
    }
    return t->stop_after != 0 && t->calls >= t->stop_after;
}

struct ids {
    uint32_t ids[256];
    size_t n;
};

static int32_t collect_id(uint32_t id, void *user_data) {
    struct ids *t = user_data;
    if (t->n == sizeof t->ids / sizeof t->ids[0]) {
        return 1;
    }
    t->ids[t->n++] = id;
    return 0;
}

static mw_sampling_options greedy(uint32_t max_tokens) {
    mw_sampling_options opts;
    mw_sampling_defaults(&opts);
    opts.temperature = 0.0f;
    opts.max_tokens = max_tokens;
    return opts;
}

/* Generates greedily from a fresh session of `model`; returns the text in *out. */
static void generate_text(const mw_model *model, const char *prompt, uint32_t max_tokens, struct text *out) {
    mw_session *s = NULL;
    OK(mw_session_new(model, &s));
    mw_sampling_options opts = greedy(max_tokens);
    memset(out, 0, sizeof *out);
    OK(mw_generate(s, prompt, &opts, collect, out, NULL));
    mw_session_free(s);
}

struct thread_job {
    const mw_model *model;
    struct text out;
    mw_status status;
};

static void *thread_main(void *arg) {
    struct thread_job *job = arg;
    mw_session *s = NULL;
    job->status = mw_session_new(job->model, &s);
    if (job->status == MW_OK) {
        mw_sampling_options opts = greedy(12);
        job->status = mw_generate(s, "JULIET:", &opts, collect, &job->out, NULL);
    }
    mw_session_free(s);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL_WITH_TOKENIZER MODEL_WITHOUT_TOKENIZER CHATML_MODEL BROKEN_TEMPLATE_MODEL\n", argv[0]);
        return 2;
    }
    const char *model_dir = argv[1], *bare_dir = argv[2], *chatml_dir = argv[3], *broken_dir = argv[4];

    /* Strings and statics. */
    CHECK(strlen(mw_version()) > 0);
    CHECK(strcmp(mw_status_string(MW_OK), "ok") == 0);
    CHECK(strcmp(mw_status_string(999), "unknown status") == 0);

    /* NULL pointers are errors, and *out is cleared. */
    EXPECT(mw_context_new(NULL, NULL), MW_ERR_NULL_POINTER, "`out`");
    EXPECT(mw_sampling_defaults(NULL), MW_ERR_NULL_POINTER, "`options`");
    EXPECT(mw_load_defaults(NULL), MW_ERR_NULL_POINTER, "`options`");
    mw_model *model = (mw_model *)&checks; /* garbage that must be overwritten */
    EXPECT(mw_model_load(NULL, model_dir, NULL, &model), MW_ERR_NULL_POINTER, "`ctx`");
    CHECK(model == NULL);
    mw_session *session = NULL;
    EXPECT(mw_session_new(NULL, &session), MW_ERR_NULL_POINTER, "`model`");
    EXPECT(mw_session_prefill(NULL, NULL, 0, NULL, 0), MW_ERR_NULL_POINTER, NULL);
    mw_context_free(NULL);
    mw_model_free(NULL);
    mw_session_free(NULL);

    mw_context *ctx = NULL;
    OK(mw_context_new(NULL, &ctx));
    CHECK(mw_last_error()[0] == '\0');
    const char *adapter = NULL;
    OK(mw_context_adapter(ctx, &adapter));
    CHECK(adapter != NULL && strlen(adapter) > 0);
    size_t list_len = 0;
    OK(mw_adapter_list(NULL, 0, &list_len));
    CHECK(list_len > 0);
    char small[4];
    EXPECT(mw_adapter_list(small, sizeof small, &list_len), MW_ERR_BUFFER_TOO_SMALL, NULL);
    mw_context *none = ctx;
    EXPECT(mw_context_new("no adapter has this name", &none), MW_ERR_NO_ADAPTER, "no adapter has this name");
    CHECK(none == NULL);

    /* Bad model paths name the path, a GGUF file's too. */
    EXPECT(mw_model_load(ctx, "/nonexistent/model-dir", NULL, &model), MW_ERR_IO, "/nonexistent/model-dir");
    CHECK(model == NULL);
    EXPECT(mw_model_load(ctx, "weights.gguf", NULL, &model), MW_ERR_IO, "weights.gguf");
    EXPECT(mw_model_load(ctx, "nobody-here/no-such-model", NULL, &model), MW_ERR_IO, "Hugging Face cache");
    EXPECT(mw_model_load(ctx, NULL, NULL, &model), MW_ERR_NULL_POINTER, "`model`");
    EXPECT(mw_model_load(ctx, "\xff\xfe", NULL, &model), MW_ERR_INVALID_UTF8, "`model`");
    mw_load_options load;
    OK(mw_load_defaults(&load));
    CHECK(load.tokenizer_path == NULL && load.weight_dtype == MW_DTYPE_AUTO && load.tokenizer_config_path == NULL);
    load.weight_dtype = 7;
    EXPECT(mw_model_load(ctx, model_dir, &load, &model), MW_ERR_INVALID_ARGUMENT, "weight_dtype");
    load.weight_dtype = MW_DTYPE_AUTO;
    load.tokenizer_path = "/nonexistent/tokenizer.json";
    EXPECT(mw_model_load(ctx, model_dir, &load, &model), MW_ERR_TOKENIZER, "/nonexistent/tokenizer.json");

    /* A handle of another kind is an error, not a crash. */
    EXPECT(mw_session_new((const mw_model *)ctx, &session), MW_ERR_INVALID_ARGUMENT, "mw_model");
    CHECK(session == NULL);

    OK(mw_model_load(ctx, model_dir, NULL, &model));
    mw_model_info info;
    EXPECT(mw_model_get_info(model, NULL), MW_ERR_NULL_POINTER, "`info`");
    OK(mw_model_get_info(model, &info));
    CHECK(info.vocab_size > 0 && info.n_layer > 0 && info.d_model > 0 && info.weight_bytes > 0 && info.has_tokenizer == 1);

    /* Tokenizing: size query, a buffer too small, the round trip, bad input. */
    size_t n_ids = 0;
    OK(mw_tokenize(model, "ROMEO:", NULL, 0, &n_ids));
    CHECK(n_ids > 1 && n_ids < 64);
    uint32_t ids[64];
    size_t n_small = 0;
    EXPECT(mw_tokenize(model, "ROMEO:", ids, n_ids - 1, &n_small), MW_ERR_BUFFER_TOO_SMALL, NULL);
    CHECK(n_small == n_ids);
    OK(mw_tokenize(model, "ROMEO:", ids, 64, &n_ids));
    size_t text_len = 0;
    OK(mw_detokenize(model, ids, n_ids, NULL, 0, &text_len));
    CHECK(text_len == strlen("ROMEO:"));
    char text[64];
    EXPECT(mw_detokenize(model, ids, n_ids, text, text_len, &text_len), MW_ERR_BUFFER_TOO_SMALL, NULL); /* no room for the NUL */
    OK(mw_detokenize(model, ids, n_ids, text, sizeof text, &text_len));
    CHECK(strcmp(text, "ROMEO:") == 0);
    OK(mw_detokenize(model, NULL, 0, text, sizeof text, &text_len));
    CHECK(text_len == 0 && text[0] == '\0');
    EXPECT(mw_tokenize(model, "\xc3\x28", ids, 64, &n_small), MW_ERR_INVALID_UTF8, "`text`");
    EXPECT(mw_tokenize(model, NULL, ids, 64, &n_small), MW_ERR_NULL_POINTER, "`text`");
    EXPECT(mw_tokenize(model, "ROMEO:", ids, 64, NULL), MW_ERR_NULL_POINTER, "`n_ids`");
    uint32_t bad_id = (uint32_t)info.vocab_size + 5;
    EXPECT(mw_detokenize(model, &bad_id, 1, text, sizeof text, &text_len), MW_ERR_INVALID_ARGUMENT, "ids[0]");
    EXPECT(mw_detokenize(model, NULL, 3, text, sizeof text, &text_len), MW_ERR_NULL_POINTER, "`ids`");

    /* Chat rendering. A model without tokenizer_config.json: the plain transcript. */
    CHECK(info.has_chat_template == 0);
    mw_chat_message romeo[] = {{"user", "ROMEO:"}};
    char chat[256];
    size_t chat_len = 0;
    OK(mw_chat_render(model, romeo, 1, 1, NULL, 0, &chat_len));
    CHECK(chat_len == strlen("ROMEO:\n\n"));
    EXPECT(mw_chat_render(model, romeo, 1, 1, chat, chat_len, &chat_len), MW_ERR_BUFFER_TOO_SMALL, "`text`"); /* no room for the NUL */
    OK(mw_chat_render(model, romeo, 1, 1, chat, sizeof chat, &chat_len));
    CHECK(strcmp(chat, "ROMEO:\n\n") == 0 && chat_len == strlen(chat));
    OK(mw_chat_render(model, NULL, 0, 1, chat, sizeof chat, &chat_len));
    CHECK(chat_len == 0 && chat[0] == '\0');
    EXPECT(mw_chat_render(NULL, romeo, 1, 1, chat, sizeof chat, &chat_len), MW_ERR_NULL_POINTER, "`model`");
    EXPECT(mw_chat_render((const mw_model *)ctx, romeo, 1, 1, chat, sizeof chat, &chat_len), MW_ERR_INVALID_ARGUMENT, "mw_model");
    EXPECT(mw_chat_render(model, NULL, 1, 1, chat, sizeof chat, &chat_len), MW_ERR_NULL_POINTER, "`messages`");
    EXPECT(mw_chat_render(model, romeo, 1, 1, chat, sizeof chat, NULL), MW_ERR_NULL_POINTER, "`text_len`");
    mw_chat_message holes[] = {{"user", "Hi"}, {"assistant", NULL}};
    EXPECT(mw_chat_render(model, holes, 2, 1, chat, sizeof chat, &chat_len), MW_ERR_NULL_POINTER, "`messages[1].content`");
    holes[1].role = NULL;
    holes[1].content = "Hello.";
    EXPECT(mw_chat_render(model, holes, 2, 1, chat, sizeof chat, &chat_len), MW_ERR_NULL_POINTER, "`messages[1].role`");
    mw_chat_message not_utf8[] = {{"user", "\xff"}};
    EXPECT(mw_chat_render(model, not_utf8, 1, 1, chat, sizeof chat, &chat_len), MW_ERR_INVALID_UTF8, "`messages[0].content`");

    /* A model folder with a ChatML template renders through it. */
    mw_model *chatml = NULL;
    OK(mw_model_load(ctx, chatml_dir, NULL, &chatml));
    mw_model_info chatml_info;
    OK(mw_model_get_info(chatml, &chatml_info));
    CHECK(chatml_info.has_chat_template == 1 && chatml_info.has_tokenizer == 1);
    mw_chat_message hi[] = {{"user", "Hi"}};
    OK(mw_chat_render(chatml, hi, 1, 1, chat, sizeof chat, &chat_len));
    CHECK(strcmp(chat, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") == 0 && chat_len == strlen(chat));
    OK(mw_chat_render(chatml, hi, 1, 0, chat, sizeof chat, &chat_len));
    CHECK(strcmp(chat, "<|im_start|>user\nHi<|im_end|>\n") == 0);
    mw_model_free(chatml);

    /* Another tokenizer_config.json through the load options: a template that raises gives its
     * message; one that does not compile, or a missing file, fails the load naming the file. */
    char config_path[4096];
    OK(mw_load_defaults(&load));
    snprintf(config_path, sizeof config_path, "%s/raising.json", chatml_dir);
    load.tokenizer_config_path = config_path;
    OK(mw_model_load(ctx, chatml_dir, &load, &chatml));
    EXPECT(mw_chat_render(chatml, hi, 1, 1, chat, sizeof chat, &chat_len), MW_ERR_INVALID_ARGUMENT, "Conversation roles must alternate");
    CHECK(strstr(mw_last_error(), "raising.json") != NULL);
    mw_model_free(chatml);
    snprintf(config_path, sizeof config_path, "%s/broken.json", chatml_dir);
    EXPECT(mw_model_load(ctx, chatml_dir, &load, &chatml), MW_ERR_MODEL, "broken.json");
    CHECK(chatml == NULL);
    load.tokenizer_config_path = "/nonexistent/tokenizer_config.json";
    EXPECT(mw_model_load(ctx, chatml_dir, &load, &chatml), MW_ERR_IO, "/nonexistent/tokenizer_config.json");
    load.tokenizer_config_path = "\xff";
    EXPECT(mw_model_load(ctx, chatml_dir, &load, &chatml), MW_ERR_INVALID_UTF8, "tokenizer_config_path");
    EXPECT(mw_model_load(ctx, broken_dir, NULL, &chatml), MW_ERR_MODEL, "tokenizer_config.json");
    CHECK(strstr(mw_last_error(), broken_dir) != NULL);
    CHECK(chatml == NULL);

    /* Prefill and steps by hand give what mw_generate_tokens gives. */
    OK(mw_session_new(model, &session));
    EXPECT(mw_session_prefill(session, NULL, 3, NULL, 0), MW_ERR_NULL_POINTER, "`ids`");
    EXPECT(mw_session_prefill(session, ids, 0, NULL, 0), MW_ERR_INVALID_ARGUMENT, "n_ids");
    EXPECT(mw_session_prefill_greedy(session, &bad_id, 1, &bad_id), MW_ERR_INVALID_ARGUMENT, "vocabulary");
    EXPECT(mw_session_step_greedy(session, ids[0], NULL), MW_ERR_NULL_POINTER, "`next_id`");
    uint64_t position = 99;
    OK(mw_session_position(session, &position));
    CHECK(position == 0);
    uint32_t by_hand[10];
    OK(mw_session_prefill_greedy(session, ids, n_ids, &by_hand[0]));
    for (int i = 1; i < 10; i++) {
        OK(mw_session_step_greedy(session, by_hand[i - 1], &by_hand[i]));
    }
    OK(mw_session_position(session, &position));
    CHECK(position == n_ids + 9);

    mw_session *other = NULL;
    OK(mw_session_new(model, &other));
    struct ids generated = {{0}, 0};
    mw_sampling_options opts = greedy(10);
    mw_generate_result result;
    OK(mw_generate_tokens(other, ids, n_ids, &opts, collect_id, &generated, &result));
    CHECK(result.prompt_tokens == n_ids);
    CHECK(generated.n == result.generated_tokens && generated.n <= 10);
    CHECK(generated.n == 10 || result.finish_reason == MW_FINISH_EOS);
    CHECK(memcmp(generated.ids, by_hand, generated.n * sizeof(uint32_t)) == 0);
    opts.stop_strings = (const char *const[]){"x"};
    opts.n_stop_strings = 1;
    EXPECT(mw_generate_tokens(other, ids, n_ids, &opts, collect_id, &generated, NULL), MW_ERR_INVALID_ARGUMENT, "stop");
    EXPECT(mw_generate_tokens(other, ids, n_ids, NULL, NULL, NULL, NULL), MW_ERR_NULL_POINTER, "`on_token`");
    mw_session_free(other);

    /* Logits: their argmax is the greedy token; a buffer too small is refused before any work. */
    float *logits = malloc(info.vocab_size * sizeof(float));
    CHECK(logits != NULL);
    OK(mw_session_reset(session));
    EXPECT(mw_session_prefill(session, ids, n_ids, logits, info.vocab_size - 1), MW_ERR_BUFFER_TOO_SMALL, "`logits`");
    OK(mw_session_position(session, &position));
    CHECK(position == 0);
    OK(mw_session_prefill(session, ids, n_ids, logits, info.vocab_size));
    size_t best = 0;
    for (size_t i = 1; i < info.vocab_size; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    CHECK(best == by_hand[0]);
    OK(mw_session_step(session, by_hand[0], logits, info.vocab_size));
    OK(mw_session_step(session, by_hand[1], NULL, 0));
    OK(mw_session_position(session, &position));
    CHECK(position == n_ids + 2);

    /* Snapshots: size query, restore, the same continuation twice; bad bytes are refused. */
    size_t snapshot_len = 0;
    OK(mw_session_snapshot(session, NULL, 0, &snapshot_len));
    CHECK(snapshot_len > 0);
    uint8_t *snapshot = malloc(snapshot_len);
    CHECK(snapshot != NULL);
    EXPECT(mw_session_snapshot(session, snapshot, snapshot_len - 1, &snapshot_len), MW_ERR_BUFFER_TOO_SMALL, NULL);
    OK(mw_session_snapshot(session, snapshot, snapshot_len, &snapshot_len));
    struct text first, second;
    opts = greedy(8);
    memset(&first, 0, sizeof first);
    OK(mw_generate(session, " and", &opts, collect, &first, &result));
    OK(mw_session_restore(session, snapshot, snapshot_len));
    OK(mw_session_position(session, &position));
    CHECK(position == n_ids + 2);
    memset(&second, 0, sizeof second);
    OK(mw_generate(session, " and", &opts, collect, &second, &result));
    CHECK(first.len > 0 && strcmp(first.buf, second.buf) == 0);
    EXPECT(mw_session_restore(session, snapshot, snapshot_len / 2), MW_ERR_SNAPSHOT, NULL);
    EXPECT(mw_session_restore(session, (const uint8_t *)"not a snapshot", 14), MW_ERR_SNAPSHOT, NULL);
    EXPECT(mw_session_restore(session, NULL, 5), MW_ERR_NULL_POINTER, "`bytes`");
    free(snapshot);

    /* Generating twice continues the text: 10 + 10 tokens are the 20 of one call. */
    struct text whole, part;
    generate_text(model, "ROMEO:", 20, &whole);
    OK(mw_session_reset(session));
    opts = greedy(10);
    memset(&part, 0, sizeof part);
    OK(mw_generate(session, "ROMEO:", &opts, collect, &part, &result));
    CHECK(result.finish_reason == MW_FINISH_MAX_TOKENS && result.generated_tokens == 10);
    OK(mw_session_position(session, &position));
    CHECK(position == n_ids + 10);
    OK(mw_generate(session, "", &opts, collect, &part, &result));
    CHECK(result.prompt_tokens == 1 && result.generated_tokens == 10);
    CHECK(strcmp(part.buf, whole.buf) == 0);

    /* A callback that asks to stop is called no more. */
    struct text stopped;
    memset(&stopped, 0, sizeof stopped);
    stopped.stop_after = 1;
    OK(mw_session_reset(session));
    OK(mw_generate(session, "ROMEO:", NULL, collect, &stopped, &result));
    CHECK(stopped.calls == 1 && result.finish_reason == MW_FINISH_CALLBACK);

    /* A callback that calls into its own session gets MW_ERR_BUSY. */
    struct text busy;
    memset(&busy, 0, sizeof busy);
    busy.reenter = session;
    OK(mw_generate(session, "ROMEO:", &opts, collect, &busy, &result));
    CHECK(busy.reentered == MW_ERR_BUSY);

    /* Stop strings: the text ends before the first occurrence, which is not passed on. */
    CHECK(strlen(whole.buf) > 8);
    char stop[4];
    memcpy(stop, whole.buf + 5, 3);
    stop[3] = '\0';
    const char *stops[] = {stop};
    opts = greedy(20);
    opts.stop_strings = stops;
    opts.n_stop_strings = 1;
    struct text cut;
    memset(&cut, 0, sizeof cut);
    OK(mw_session_reset(session));
    OK(mw_generate(session, "ROMEO:", &opts, collect, &cut, &result));
    CHECK(result.finish_reason == MW_FINISH_STOP_STRING);
    CHECK(cut.len == (size_t)(strstr(whole.buf, stop) - whole.buf) && strncmp(cut.buf, whole.buf, cut.len) == 0);
    const char *empty_stop[] = {""};
    opts.stop_strings = empty_stop;
    EXPECT(mw_generate(session, "ROMEO:", &opts, collect, &cut, &result), MW_ERR_INVALID_ARGUMENT, "stop_strings[0]");
    const char *null_stop[] = {NULL};
    opts.stop_strings = null_stop;
    EXPECT(mw_generate(session, "ROMEO:", &opts, collect, &cut, &result), MW_ERR_NULL_POINTER, "stop_strings[0]");
    CHECK(result.finish_reason == MW_FINISH_NONE && result.generated_tokens == 0);

    /* Bad options name the field; a NULL callback or prompt is an error. */
    opts = greedy(5);
    opts.top_p = 2.0f;
    EXPECT(mw_generate(session, "ROMEO:", &opts, collect, &cut, NULL), MW_ERR_INVALID_ARGUMENT, "top_p");
    opts = greedy(5);
    opts.temperature = -1.0f;
    EXPECT(mw_generate(session, "ROMEO:", &opts, collect, &cut, NULL), MW_ERR_INVALID_ARGUMENT, "temperature");
    EXPECT(mw_generate(session, "ROMEO:", NULL, NULL, NULL, NULL), MW_ERR_NULL_POINTER, "`on_text`");
    EXPECT(mw_generate(session, NULL, NULL, collect, &cut, NULL), MW_ERR_NULL_POINTER, "`prompt`");
    EXPECT(mw_generate(session, "\xff", NULL, collect, &cut, NULL), MW_ERR_INVALID_UTF8, "`prompt`");
    OK(mw_session_reset(session));
    EXPECT(mw_generate(session, "", NULL, collect, &cut, NULL), MW_ERR_INVALID_ARGUMENT, "empty");

    /* Sessions of one model on two threads at once. */
    struct thread_job jobs[2];
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].model = model;
        CHECK(pthread_create(&threads[i], NULL, thread_main, &jobs[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_join(threads[i], NULL) == 0);
        CHECK(jobs[i].status == MW_OK && jobs[i].out.len > 0);
    }
    CHECK(strcmp(jobs[0].out.buf, jobs[1].out.buf) == 0);

    /* A model without tokenizer.json works on ids; text calls say what is missing. */
    mw_model *bare = NULL;
    OK(mw_model_load(ctx, bare_dir, NULL, &bare));
    OK(mw_model_get_info(bare, &info));
    CHECK(info.has_tokenizer == 0);
    EXPECT(mw_tokenize(bare, "hello", ids, 64, &n_ids), MW_ERR_TOKENIZER, "tokenizer");
    mw_session *bare_session = NULL;
    OK(mw_session_new(bare, &bare_session));
    EXPECT(mw_generate(bare_session, "hello", NULL, collect, &cut, NULL), MW_ERR_TOKENIZER, "tokenizer");
    uint32_t prompt[3] = {1, 2, 3};
    generated.n = 0;
    opts = greedy(4);
    OK(mw_generate_tokens(bare_session, prompt, 3, &opts, collect_id, &generated, &result));
    CHECK(result.generated_tokens == generated.n && generated.n > 0);
    /* Freed in an order other than creation: the session keeps its model and context alive. */
    mw_model_free(bare);
    mw_context_free(ctx);
    OK(mw_generate_tokens(bare_session, prompt, 3, &opts, collect_id, &generated, NULL));
    mw_session_free(bare_session);

    free(logits);
    mw_session_free(session);
    mw_model_free(model);
    printf("ok: %d checks\n", checks);
    return 0;
}
