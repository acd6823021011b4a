"""Chat-app callbacks (issue 25): the listener that will take button clicks from DingTalk,
Feishu and WeCom cards and turn them into incident updates. So far: each vendor's callback
checks (`wecom_crypto`, `feishu_crypto`, `dingtalk_crypto`; one `CallbackRejected` with a
reason for every refusal, `rejection`), following docs/design/chat-app-actions.md."""
