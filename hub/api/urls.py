from django.urls import path, re_path

from hub.api import batches_views as batches
from hub.api import chat_completions_views as chats
from hub.api import conversations_views as conversations
from hub.api import files_views as files
from hub.api import responses_views, views
from hub.api import uploads_views as uploads
from hub.api import vector_store_files_views as vs_files
from hub.api import vector_stores_views as vs
from hub.api import webhooks_views as wh

# The same routes under every base URL of the reference (/v1, /v2, /vision).
api_patterns = [
    path("models", views.ModelListView.as_view(), name="models"),
    path("models/<path:model_id>", views.ModelDetailView.as_view(), name="model-detail"),
    path("usage", views.UsageView.as_view(), name="usage"),
    path("costs", views.CostsView.as_view(), name="costs"),
    # POST /responses is the gateway's (a Channels consumer); the stored responses are read here
    path("responses/<str:response_id>", responses_views.ResponseDetailView.as_view(), name="response"),
    path("responses/<str:response_id>/input_items", responses_views.InputItemsView.as_view(), name="input-items"),
    path("responses/<str:response_id>/cancel", responses_views.CancelView.as_view(), name="response-cancel"),
    # POST /chat/completions is the gateway's; GET lists the stored ones (hub/asgi.py sends it here)
    path("chat/completions", chats.ChatCompletionListView.as_view(), name="chat-completions"),
    path("chat/completions/<str:completion_id>", chats.ChatCompletionDetailView.as_view(), name="chat-completion"),
    path(
        "chat/completions/<str:completion_id>/messages",
        chats.ChatCompletionMessagesView.as_view(),
        name="chat-completion-messages",
    ),  # fmt: skip
    path("conversations", conversations.ConversationCreateView.as_view(), name="conversations"),
    path("conversations/<str:conversation_id>", conversations.ConversationDetailView.as_view(), name="conversation"),
    path(
        "conversations/<str:conversation_id>/items",
        conversations.ConversationItemsView.as_view(),
        name="conversation-items",
    ),  # fmt: skip
    path(
        "conversations/<str:conversation_id>/items/<str:item_id>",
        conversations.ConversationItemView.as_view(),
        name="conversation-item",
    ),  # fmt: skip
    path("files", files.FileListView.as_view(), name="files"),
    path("files/<str:file_id>", files.FileDetailView.as_view(), name="file"),
    path("files/<str:file_id>/content", files.FileContentView.as_view(), name="file-content"),
    path("uploads", uploads.UploadCreateView.as_view(), name="uploads"),
    path("uploads/<str:upload_id>/parts", uploads.UploadPartView.as_view(), name="upload-parts"),
    path("uploads/<str:upload_id>/complete", uploads.UploadCompleteView.as_view(), name="upload-complete"),
    path("uploads/<str:upload_id>/cancel", uploads.UploadCancelView.as_view(), name="upload-cancel"),
    path("batches", batches.BatchListView.as_view(), name="batches"),
    path("batches/<str:batch_id>", batches.BatchDetailView.as_view(), name="batch"),
    path("batches/<str:batch_id>/cancel", batches.BatchCancelView.as_view(), name="batch-cancel"),
    path("webhook_endpoints", wh.WebhookListView.as_view(), name="webhook-endpoints"),
    path("webhook_endpoints/<str:webhook_endpoint_id>", wh.WebhookDetailView.as_view(), name="webhook-endpoint"),
    path(
        "webhook_endpoints/<str:webhook_endpoint_id>/rotate_secret",
        wh.WebhookRotateView.as_view(),
        name="webhook-endpoint-rotate",
    ),
    path(
        "webhook_endpoints/<str:webhook_endpoint_id>/test", wh.WebhookTestView.as_view(), name="webhook-endpoint-test"
    ),
    path("webhook_event_types", wh.WebhookEventTypesView.as_view(), name="webhook-event-types"),
    path("vector_stores", vs.VectorStoreListView.as_view(), name="vector-stores"),
    path("vector_stores/<str:vector_store_id>", vs.VectorStoreDetailView.as_view(), name="vector-store"),
    path("vector_stores/<str:vector_store_id>/search", vs.VectorStoreSearchView.as_view(), name="vector-store-search"),
    path(
        "vector_stores/<str:vector_store_id>/files",
        vs_files.VectorStoreFileListView.as_view(),
        name="vector-store-files",
    ),
    path(
        "vector_stores/<str:vector_store_id>/files/<str:file_id>",
        vs_files.VectorStoreFileDetailView.as_view(),
        name="vector-store-file",
    ),
    path(
        "vector_stores/<str:vector_store_id>/files/<str:file_id>/content",
        vs_files.VectorStoreFileContentView.as_view(),
        name="vector-store-file-content",
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches",
        vs_files.FileBatchCreateView.as_view(),
        name="vector-store-file-batches",
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches/<str:batch_id>",
        vs_files.FileBatchDetailView.as_view(),
        name="vector-store-file-batch",
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches/<str:batch_id>/cancel",
        vs_files.FileBatchCancelView.as_view(),
        name="vector-store-file-batch-cancel",
    ),
    path(
        "vector_stores/<str:vector_store_id>/file_batches/<str:batch_id>/files",
        vs_files.FileBatchFilesView.as_view(),
        name="vector-store-file-batch-files",
    ),
    re_path(r"^.*$", views.unknown_url),
]
