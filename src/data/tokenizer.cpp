#if HOKUSAI_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

#include <filesystem>

#include "hokusai/data.hpp"

namespace hokusai {

std::vector<int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id == kEndOfDocument)
      out += '\n';
    else if (id >= 0 && id < 256)
      out += static_cast<char>(id);
    else
      out += '?';
  }
  return out;
}

#if HOKUSAI_HAVE_SENTENCEPIECE
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path) {
    if (!std::filesystem::is_regular_file(path))
      throw DataError("data.tokenizer_model: SentencePiece model '" + path + "' not found");
    const auto status = sp_.Load(path);
    if (!status.ok())
      throw DataError("data.tokenizer_model: cannot load SentencePiece model '" + path + "': " + status.ToString());
    vocab_ = sp_.GetPieceSize();
    // The end-of-document token is the model's </s>; a model without one gets an extra id.
    eod_ = sp_.eos_id() >= 0 ? sp_.eos_id() : vocab_;
    if (sp_.eos_id() < 0) ++vocab_;
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) throw DataError("SentencePiece encode failed: " + status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string out, piece;
    std::vector<int> run;
    const auto flush = [&] {
      if (run.empty()) return;
      sp_.Decode(run, &piece).IgnoreError();
      out += piece;
      run.clear();
    };
    for (int32_t id : ids) {
      if (id == eod_) {
        flush();
        out += '\n';
      } else if (id >= 0 && id < sp_.GetPieceSize()) {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }
  int32_t vocab_size() const override { return vocab_; }
  int32_t end_of_document() const override { return eod_; }
  std::string name() const override { return "sentencepiece:" + std::filesystem::path(path_).filename().string(); }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor sp_;
  int32_t vocab_ = 0, eod_ = 0;
};

}  // namespace
#endif

std::unique_ptr<Tokenizer> make_tokenizer(TokenizerKind kind, const std::string& model_path) {
  if (kind == TokenizerKind::byte) return std::make_unique<ByteTokenizer>();
  if (model_path.empty())
    throw DataError("data.tokenizer: sentencepiece needs data.tokenizer_model (path of a .model file)");
#if HOKUSAI_HAVE_SENTENCEPIECE
  return std::make_unique<SentencePieceTokenizer>(model_path);
#else
  throw DataError("data.tokenizer: sentencepiece is not in this build (HOKUSAI_WITH_SENTENCEPIECE=OFF): use "
                  "data.tokenizer: byte, or preprocess on a build that has it and train on the .bin/.idx");
#endif
}

}  // namespace hokusai
